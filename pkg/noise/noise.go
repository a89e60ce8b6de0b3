// Package noise decides which updates are not worth publishing: those whose
// only changes are in ignored field paths, such as a node's heartbeat
// timestamps, which the kubelet rewrites every few minutes without anything
// else changing. Such updates are counted, not published; the source still
// records their resourceVersion so a restart does not send them.
package noise

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
)

// ResourceVersionOnly is the path that stands for updates that change
// nothing but metadata.resourceVersion (after managedFields are dropped): a
// no-op update, a server-side apply by another field manager that set the
// same values.
const ResourceVersionOnly = "metadata.resourceVersion"

// Defaults is the --ignore-paths default: resourceVersion-only updates of
// every kind, and node heartbeats.
var Defaults = []string{
	"*:" + ResourceVersionOnly,
	"nodes:status.conditions[*].lastHeartbeatTime",
}

// Filter holds the ignored paths per kind and counts what they ignored. It
// is safe for concurrent use.
type Filter struct {
	rules map[string]*rules // by resource; "*" applies to every kind
	// ignored counts per resource (*atomic.Uint64), created on first use:
	// kinds may be discovered while running.
	ignored sync.Map
}

type rules struct {
	resourceVersionOnly bool
	paths               []*regexp.Regexp
}

// New parses rules of the form [resource:]path ("nodes:status.conditions[*].lastHeartbeatTime";
// without a resource the path is ignored for every kind). A rule of a kind
// that is not watched never applies (the defaults name nodes); Kinds lists
// the kinds rules name, for callers that want to refuse unwatched ones.
// Paths use changed_paths' spelling; "[*]" matches any list
// index or map key, "*" any one field name, and a path also covers every
// path under it.
func New(specs []string) (*Filter, error) {
	f := &Filter{rules: map[string]*rules{}}
	for _, spec := range specs {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		res, path, ok := strings.Cut(spec, ":")
		if !ok {
			res, path = "*", spec
		}
		if res != "*" && !resourceName.MatchString(res) {
			return nil, fmt.Errorf("--ignore-paths %q: %q is not a kind: write the resource name (pods, nodes, certificates.cert-manager.io) before the colon, or no kind for all", spec, res)
		}
		r := f.rules[res]
		if r == nil {
			r = &rules{}
			f.rules[res] = r
		}
		if path == ResourceVersionOnly {
			r.resourceVersionOnly = true
			continue
		}
		re, err := compile(path)
		if err != nil {
			return nil, fmt.Errorf("--ignore-paths %q: %w", spec, err)
		}
		r.paths = append(r.paths, re)
	}
	return f, nil
}

// resourceName is kubestream's spelling of a kind: a lower-case plural,
// with its API group after a dot for kinds outside the core ones.
var resourceName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

// Kinds lists the kinds the rules name, sorted ("*" is not a kind).
func (f *Filter) Kinds() []string {
	var out []string
	for r := range f.rules {
		if r != "*" {
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

// validPath is the changed_paths grammar with the two wildcards.
var validPath = regexp.MustCompile(`^(?:[A-Za-z0-9_$-]+|\*)`)

// compile turns a path pattern into a regular expression over changed
// paths.
func compile(path string) (*regexp.Regexp, error) {
	if path == "" || strings.HasPrefix(path, ".") || strings.HasSuffix(path, ".") || strings.Contains(path, "..") {
		return nil, fmt.Errorf("path %q is not a field path: write it like status.conditions[*].lastHeartbeatTime", path)
	}
	var b strings.Builder
	b.WriteString("^")
	for rest := path; rest != ""; {
		switch {
		case strings.HasPrefix(rest, "[*]"):
			b.WriteString(`(?:\[(?:\d+|"(?:[^"\\]|\\.)*")\]|\.[^.\[]+)`)
			rest = rest[3:]
		case strings.HasPrefix(rest, "["):
			end := strings.Index(rest, "]")
			if end < 0 {
				return nil, fmt.Errorf("path %q has an unclosed [", path)
			}
			b.WriteString(regexp.QuoteMeta(rest[:end+1]))
			rest = rest[end+1:]
		case strings.HasPrefix(rest, "."):
			b.WriteString(`\.`)
			rest = rest[1:]
		default:
			seg := validPath.FindString(rest)
			if seg == "" {
				return nil, fmt.Errorf("path %q: unexpected %q: write it like status.conditions[*].lastHeartbeatTime", path, rest[:1])
			}
			if seg == "*" {
				b.WriteString(`[^.\[]+`)
			} else {
				b.WriteString(regexp.QuoteMeta(seg))
			}
			rest = rest[len(seg):]
		}
	}
	// A path covers the paths under it.
	b.WriteString(`(?:$|[.\[])`)
	return regexp.Compile(b.String())
}

// Ignore reports whether an update of one uid from prev to next changes
// only ignored paths, and counts it if so. Compact objects are compared on
// their bytes when only resourceVersion bumps are ignored for the kind, so
// the common case costs no decoding.
func (f *Filter) Ignore(resource string, prev, next change.Object) bool {
	if f == nil {
		return false
	}
	rvOnly, paths := f.rulesFor(resource)
	if !rvOnly && len(paths) == 0 {
		return false
	}
	if rvOnly {
		if pc, ok := prev.(*change.Compact); ok {
			if nc, ok := next.(*change.Compact); ok && sameButResourceVersion(pc.Bytes(), nc.Bytes()) {
				f.count(resource)
				return true
			}
			if len(paths) == 0 {
				return false
			}
		}
	}
	a, err := change.Full(prev)
	if err != nil {
		return false
	}
	b, err := change.Full(next)
	if err != nil {
		return false
	}
	changed := event.ChangedPaths(a, b)
	if len(changed) == 0 {
		if rvOnly {
			f.count(resource)
		}
		return rvOnly
	}
	if len(changed) >= event.MaxChangedPaths {
		return false // the list is cut short: what is beyond it is unknown
	}
	for _, p := range changed {
		if !matchesAny(paths, p) {
			return false
		}
	}
	f.count(resource)
	return true
}

func (f *Filter) rulesFor(resource string) (rvOnly bool, paths []*regexp.Regexp) {
	for _, r := range []*rules{f.rules["*"], f.rules[resource]} {
		if r == nil {
			continue
		}
		rvOnly = rvOnly || r.resourceVersionOnly
		paths = append(paths, r.paths...)
	}
	return rvOnly, paths
}

func matchesAny(res []*regexp.Regexp, path string) bool {
	for _, re := range res {
		if re.MatchString(path) {
			return true
		}
	}
	return false
}

func (f *Filter) count(resource string) {
	c, ok := f.ignored.Load(resource)
	if !ok {
		c, _ = f.ignored.LoadOrStore(resource, &atomic.Uint64{})
	}
	c.(*atomic.Uint64).Add(1)
}

// Ignored returns how many updates were ignored per resource, for the kinds
// that had any.
func (f *Filter) Ignored() map[string]uint64 {
	out := map[string]uint64{}
	if f == nil {
		return out
	}
	f.ignored.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

// Field numbers in the Kubernetes protobuf encoding: every top-level type
// has its ObjectMeta at 1, and ObjectMeta its resourceVersion at 6.
const (
	fieldMetadata       = 1
	metaResourceVersion = 6
)

// sameButResourceVersion reports whether two encodings of an object differ
// at most in metadata.resourceVersion. The generated Marshal writes fields
// in number order and map entries sorted, so equal objects encode equally.
// It allocates nothing.
func sameButResourceVersion(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	beforeA, metaA, afterA, ok1 := splitField(a, fieldMetadata)
	beforeB, metaB, afterB, ok2 := splitField(b, fieldMetadata)
	if !ok1 || !ok2 || !bytes.Equal(beforeA, beforeB) || !bytes.Equal(afterA, afterB) {
		return false
	}
	beforeA, _, afterA, ok1 = splitField(metaA, metaResourceVersion)
	beforeB, _, afterB, ok2 = splitField(metaB, metaResourceVersion)
	return ok1 == ok2 && bytes.Equal(beforeA, beforeB) && bytes.Equal(afterA, afterB)
}

// splitField returns the bytes of a message before the first field num, that
// field's payload, and the bytes after it; ok is false when the field is
// absent or the message malformed.
func splitField(msg []byte, num protowire.Number) (before, payload, after []byte, ok bool) {
	for b, at := msg, 0; len(b) > 0; {
		n0, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			return nil, nil, nil, false
		}
		if n0 == num && typ == protowire.BytesType {
			_, _, tagLen := protowire.ConsumeTag(b)
			payload, _ = protowire.ConsumeBytes(b[tagLen:])
			return msg[:at], payload, msg[at+n:], true
		}
		b, at = b[n:], at+n
	}
	return msg, nil, nil, false
}
