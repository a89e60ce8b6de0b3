package nats

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// DefaultSubjectPrefix starts every subject unless --nats-subject-prefix says
// otherwise.
const DefaultSubjectPrefix = "kubestream"

// ReplayToken is the subject token of replay markers: <prefix>.replay.
const ReplayToken = event.ReplayResource

// HeartbeatToken is the subject token of heartbeats:
// <prefix>.heartbeat.<resource>, one subject per kind, so a stream with
// MaxMsgsPerSubject 1 (or a KV-style reader) keeps the latest of each.
const HeartbeatToken = "heartbeat"

// Subjects are built from tokens joined by dots:
//
//	<prefix>.<resource>.<namespace>.<name>   namespaced kinds (pods, deployments, configmaps)
//	<prefix>.<resource>.<name>               cluster-scoped kinds (nodes)
//
// where <resource> is the kind's name as one token: "pods", and for kinds
// of other groups "<plural>.<group>" escaped ("widgets%2Eexample%2Ecom").
//	<prefix>.imagestorage.<node>             image-storage events
//	<prefix>.replay                          replay begin/end markers
//	<prefix>.heartbeat.<resource>            heartbeats of one kind
//
// NATS splits subjects at dots and gives '*' and '>' wildcard meaning, while
// Kubernetes names may contain dots (kube-root-ca.crt). EscapeToken makes one
// subject token of any string, reversibly: every byte other than ASCII
// letters, digits, '-' and '_' becomes '%' followed by two upper-case hex
// digits ('.' -> %2E, '*' -> %2A, '>' -> %3E, '%' -> %25, ' ' -> %20), and
// the empty string becomes a lone "%". UnescapeToken accepts exactly the
// tokens EscapeToken produces, so names and tokens map one to one.

// EscapeToken encodes s as one NATS subject token.
func EscapeToken(s string) string {
	if s == "" {
		return "%"
	}
	plain := true
	for i := 0; i < len(s); i++ {
		if !safeByte(s[i]) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if safeByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xF])
	}
	return b.String()
}

// UnescapeToken decodes a token made by EscapeToken. It rejects anything
// EscapeToken would not have produced (lower-case hex, escaped safe bytes,
// raw unsafe bytes), so each name has exactly one token.
func UnescapeToken(tok string) (string, error) {
	if tok == "%" {
		return "", nil
	}
	if tok == "" {
		return "", errors.New("empty subject token")
	}
	if !strings.Contains(tok, "%") {
		for i := 0; i < len(tok); i++ {
			if !safeByte(tok[i]) {
				return "", fmt.Errorf("subject token %q: byte %q must be escaped", tok, tok[i])
			}
		}
		return tok, nil
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '%' {
			if !safeByte(c) {
				return "", fmt.Errorf("subject token %q: byte %q must be escaped", tok, c)
			}
			out = append(out, c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("subject token %q: truncated escape at %d", tok, i)
		}
		hi, ok1 := unhex(tok[i+1])
		lo, ok2 := unhex(tok[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("subject token %q: bad escape %q", tok, tok[i:i+3])
		}
		v := hi<<4 | lo
		if safeByte(v) {
			return "", fmt.Errorf("subject token %q: %q needs no escape", tok, tok[i:i+3])
		}
		out = append(out, v)
		i += 2
	}
	return string(out), nil
}

func safeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// unhex accepts upper-case hex digits only: the canonical form.
func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// ValidatePrefix checks a subject prefix: one or more dot-separated tokens
// without wildcards or whitespace.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return errors.New("subject prefix is empty: use a name such as \"kubestream\" or \"k8s.prod\"")
	}
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" {
			return fmt.Errorf("subject prefix %q has an empty token: no leading, trailing or double dots", prefix)
		}
		if strings.ContainsAny(tok, "*> \t\r\n") {
			return fmt.Errorf("subject prefix %q contains a wildcard or whitespace: use plain tokens such as \"k8s.prod\"", prefix)
		}
	}
	return nil
}

// Subject returns the subject an event is published on.
func Subject(prefix string, ev *kubestreamv1.Event) string {
	if hb := ev.GetHeartbeat(); hb != nil {
		return prefix + "." + HeartbeatToken + "." + EscapeToken(hb.GetResource())
	}
	kind := event.Resource(ev)
	switch kind {
	case ReplayToken:
		return prefix + "." + ReplayToken
	case kinds.ImageStorage:
		return prefix + "." + kinds.ImageStorage + "." + EscapeToken(ev.GetObject().GetName())
	}
	obj := ev.GetObject()
	kind = EscapeToken(kind)
	if obj.GetNamespace() == "" {
		return prefix + "." + kind + "." + EscapeToken(obj.GetName())
	}
	return prefix + "." + kind + "." + EscapeToken(obj.GetNamespace()) + "." + EscapeToken(obj.GetName())
}

// Parsed is what a subject says about its event.
type Parsed struct {
	// Kind is the kind token: a resource name, "imagestorage", "replay" or
	// "heartbeat" (Name is then the resource).
	Kind      string
	Namespace string
	Name      string
}

// ParseSubject splits a subject made by Subject back into its parts.
func ParseSubject(prefix, subject string) (Parsed, error) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return Parsed{}, fmt.Errorf("subject %q does not start with %q", subject, prefix+".")
	}
	toks := strings.Split(rest, ".")
	kind, err := UnescapeToken(toks[0])
	if err != nil {
		return Parsed{}, err
	}
	p := Parsed{Kind: kind}
	switch {
	case p.Kind == ReplayToken && len(toks) == 1:
		return p, nil
	case len(toks) == 2:
		p.Name, err = UnescapeToken(toks[1])
	case len(toks) == 3:
		if p.Namespace, err = UnescapeToken(toks[1]); err == nil {
			p.Name, err = UnescapeToken(toks[2])
		}
	default:
		return Parsed{}, fmt.Errorf("subject %q has %d tokens after the prefix, want 2 or 3", subject, len(toks))
	}
	if err != nil {
		return Parsed{}, err
	}
	return p, nil
}

// Families lists subject patterns that together match every subject the sink
// publishes for the given kinds: a stream must cover each of them.
func Families(prefix string, ks []kinds.Kind) []string {
	out := make([]string, 0, len(ks)+3)
	for _, k := range ks {
		out = append(out, prefix+"."+EscapeToken(k.Resource)+".>")
	}
	return append(out, prefix+"."+kinds.ImageStorage+".>", prefix+"."+ReplayToken, prefix+"."+HeartbeatToken+".>")
}

// Covers reports whether every subject matched by pattern want is also
// matched by pattern have (NATS wildcards: '*' one token, '>' the rest).
func Covers(have, want string) bool {
	h, w := strings.Split(have, "."), strings.Split(want, ".")
	for i, ht := range h {
		if ht == ">" {
			return i < len(w)
		}
		if i >= len(w) {
			return false
		}
		wt := w[i]
		switch {
		case wt == ">":
			return false // want matches any depth here, have does not
		case ht == "*":
			// matches any single token, including a '*' in want
		case wt == "*" || ht != wt:
			return false
		}
	}
	return len(h) == len(w)
}
