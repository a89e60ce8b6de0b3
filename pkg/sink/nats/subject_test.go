package nats

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/kinds"
)

func TestEscapeTokenTable(t *testing.T) {
	for _, tc := range []struct{ name, token string }{
		{"api-7d9f", "api-7d9f"},
		{"kube-root-ca.crt", "kube-root-ca%2Ecrt"},
		{"a.b.c", "a%2Eb%2Ec"},
		{"*", "%2A"},
		{">", "%3E"},
		{"100%", "100%25"},
		{"%2E", "%252E"},
		{"with space", "with%20space"},
		{"tab\there", "tab%09here"},
		{"new\nline", "new%0Aline"},
		{"", "%"},
		{"%", "%25"},
		{"ünï", "%C3%BCn%C3%AF"},
		{"UPPER_lower-09", "UPPER_lower-09"},
		{"$JS", "%24JS"},
	} {
		got := EscapeToken(tc.name)
		if got != tc.token {
			t.Errorf("EscapeToken(%q) = %q, want %q", tc.name, got, tc.token)
		}
		back, err := UnescapeToken(got)
		if err != nil || back != tc.name {
			t.Errorf("UnescapeToken(%q) = %q, %v; want %q", got, back, err, tc.name)
		}
	}
}

func TestUnescapeTokenRejectsNonCanonical(t *testing.T) {
	for _, tok := range []string{"", "a.b", "a%2eb", "%41", "a%2", "a%", "%%", "a b", "a*", "x>", "%G0", "ü"} {
		if got, err := UnescapeToken(tok); err == nil {
			t.Errorf("UnescapeToken(%q) = %q, want an error", tok, got)
		}
	}
}

func FuzzEscapeToken(f *testing.F) {
	for _, s := range []string{"", "kube-root-ca.crt", "a.b.*.>", "%", "%25", "x y", "\x00\xff", "ünï"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := EscapeToken(s)
		if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Fatalf("EscapeToken(%q) = %q is not a single plain subject token", s, tok)
		}
		back, err := UnescapeToken(tok)
		if err != nil || back != s {
			t.Fatalf("round trip of %q via %q gave %q, %v", s, tok, back, err)
		}
		// The other direction: any token that decodes must be the one
		// EscapeToken makes, so names and tokens map one to one.
		if name, err := UnescapeToken(s); err == nil && EscapeToken(name) != s {
			t.Fatalf("UnescapeToken(%q) = %q, but EscapeToken gives %q", s, name, EscapeToken(name))
		}
	})
}

func ref(kind, ns, name string) *kubestreamv1.ObjectRef {
	return &kubestreamv1.ObjectRef{Kind: kind, Namespace: ns, Name: name}
}

func TestSubject(t *testing.T) {
	for _, tc := range []struct {
		ev   *kubestreamv1.Event
		want string
		p    Parsed
	}{
		{&kubestreamv1.Event{Object: ref("Pod", "payments", "api-7d9f")}, "k8s.pods.payments.api-7d9f", Parsed{"pods", "payments", "api-7d9f"}},
		{&kubestreamv1.Event{Object: ref("ConfigMap", "kube-system", "kube-root-ca.crt")}, "k8s.configmaps.kube-system.kube-root-ca%2Ecrt", Parsed{"configmaps", "kube-system", "kube-root-ca.crt"}},
		{&kubestreamv1.Event{Object: ref("Deployment", "a", "b")}, "k8s.deployments.a.b", Parsed{"deployments", "a", "b"}},
		{&kubestreamv1.Event{Object: ref("Node", "", "ip-10-0-0-1.ec2.internal")}, "k8s.nodes.ip-10-0-0-1%2Eec2%2Einternal", Parsed{"nodes", "", "ip-10-0-0-1.ec2.internal"}},
		{&kubestreamv1.Event{Object: ref("Node", "", "n1.x"), Payload: &kubestreamv1.Event_ImageStorage{ImageStorage: &kubestreamv1.ImageStorage{}}}, "k8s.imagestorage.n1%2Ex", Parsed{"imagestorage", "", "n1.x"}},
		{&kubestreamv1.Event{Payload: &kubestreamv1.Event_Replay{Replay: &kubestreamv1.ReplayMarker{}}}, "k8s.replay", Parsed{Kind: "replay"}},
	} {
		got := Subject("k8s", tc.ev)
		if got != tc.want {
			t.Errorf("Subject = %q, want %q", got, tc.want)
			continue
		}
		p, err := ParseSubject("k8s", got)
		if err != nil || p != tc.p {
			t.Errorf("ParseSubject(%q) = %+v, %v; want %+v", got, p, err, tc.p)
		}
	}
}

func FuzzSubjectRoundTrip(f *testing.F) {
	f.Add("kube-system", "kube-root-ca.crt")
	f.Add("a.b", "*.>")
	f.Fuzz(func(t *testing.T, ns, name string) {
		if !utf8.ValidString(ns) || !utf8.ValidString(name) {
			return // protobuf strings are UTF-8
		}
		ev := &kubestreamv1.Event{Object: ref("ConfigMap", ns, name)}
		subj := Subject("k8s.prod", ev)
		p, err := ParseSubject("k8s.prod", subj)
		if ns == "" {
			// Cluster-scoped shape: the namespace token is omitted.
			if err != nil || p.Name != name || p.Namespace != "" {
				t.Fatalf("ParseSubject(%q) = %+v, %v", subj, p, err)
			}
			return
		}
		if err != nil || p.Namespace != ns || p.Name != name || p.Kind != "configmaps" {
			t.Fatalf("ParseSubject(%q) = %+v, %v; want %q/%q", subj, p, err, ns, name)
		}
	})
}

func TestValidatePrefix(t *testing.T) {
	for _, ok := range []string{"kubestream", "k8s.prod", "a_b-c"} {
		if err := ValidatePrefix(ok); err != nil {
			t.Errorf("ValidatePrefix(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".a", "a.", "a..b", "a.*", "a.>", "a b"} {
		if err := ValidatePrefix(bad); err == nil {
			t.Errorf("ValidatePrefix(%q) accepted", bad)
		}
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		have, want string
		ok         bool
	}{
		{"ks.>", "ks.pods.>", true},
		{">", "ks.replay", true},
		{"ks.*", "ks.replay", true},
		{"ks.*", "ks.pods.>", false},
		{"ks.pods.>", "ks.pods.>", true},
		{"ks.pods.*.*", "ks.pods.>", false},
		{"ks.nodes.>", "ks.pods.>", false},
		{"ks.replay", "ks.replay", true},
		{"ks.replay.>", "ks.replay", false},
		{"ks.*.>", "ks.imagestorage.>", true},
		{"other.>", "ks.pods.>", false},
	} {
		if got := Covers(tc.have, tc.want); got != tc.ok {
			t.Errorf("Covers(%q, %q) = %v, want %v", tc.have, tc.want, got, tc.ok)
		}
	}
	if missing := uncovered([]string{"ks.pods.>", "ks.nodes.>"}, "ks"); len(missing) != len(kinds.All())+3-2 {
		t.Errorf("uncovered = %q", missing)
	}
}
