package noise

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubestream/kubestream/pkg/change"
)

func node(rv string, heartbeat time.Time, labels map[string]string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u1", ResourceVersion: rv, Labels: labels},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: metav1.NewTime(heartbeat)},
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.NewTime(heartbeat)},
		}},
	}
}

func TestDefaultsIgnoreNodeHeartbeatsOnly(t *testing.T) {
	f, err := New(Defaults)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	base := node("1", t0, map[string]string{"a": "1"})
	cases := []struct {
		name   string
		next   *corev1.Node
		ignore bool
	}{
		{"heartbeat", node("2", t0.Add(time.Minute), map[string]string{"a": "1"}), true},
		{"resourceVersion only", node("2", t0, map[string]string{"a": "1"}), true},
		{"label", node("2", t0, map[string]string{"a": "2"}), false},
		{"heartbeat and label", node("2", t0.Add(time.Minute), map[string]string{"a": "2"}), false},
		{"condition status", func() *corev1.Node {
			n := node("2", t0.Add(time.Minute), map[string]string{"a": "1"})
			n.Status.Conditions[1].Status = corev1.ConditionFalse
			return n
		}(), false},
		{"condition added", func() *corev1.Node {
			n := node("2", t0.Add(time.Minute), map[string]string{"a": "1"})
			n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeDiskPressure})
			return n
		}(), false},
	}
	for _, c := range cases {
		if got := f.Ignore("nodes", base, c.next); got != c.ignore {
			t.Errorf("%s: Ignore = %v, want %v", c.name, got, c.ignore)
		}
	}
	if got := f.Ignored()["nodes"]; got != 2 {
		t.Errorf("ignored nodes = %d, want 2", got)
	}
	// The heartbeat path is a node rule: a pod with the same change is kept.
	if f.Ignore("pods", base, node("2", t0.Add(time.Minute), map[string]string{"a": "1"})) {
		t.Error("a node rule ignored a pod update")
	}
}

func TestKindsNamedByRules(t *testing.T) {
	f, err := New(append(Defaults, "certificates.cert-manager.io:status.renewalTime", "pods:metadata.annotations"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.Kinds(), ","); got != "certificates.cert-manager.io,nodes,pods" {
		t.Fatalf("Kinds() = %s", got)
	}
}

func TestPatterns(t *testing.T) {
	cases := []struct {
		pattern, path string
		match         bool
	}{
		{"status.conditions[*].lastHeartbeatTime", "status.conditions[3].lastHeartbeatTime", true},
		{"status.conditions[*].lastHeartbeatTime", "status.conditions[3].lastTransitionTime", false},
		{"status.conditions[*].lastHeartbeatTime", "status.conditions", false},
		{"metadata.annotations", "metadata.annotations.x", true},
		{"metadata.annotations", `metadata.annotations["example.com/x"]`, true},
		{"metadata.annotations", "metadata.annotationsX", false},
		{"metadata.labels[*]", "metadata.labels.app", true},
		{"metadata.labels[*]", `metadata.labels["app.kubernetes.io/name"]`, true},
		{"status.*.ready", "status.containerStatuses.ready", true},
		{`metadata.annotations["example.com/x"]`, `metadata.annotations["example.com/x"]`, true},
		{`metadata.annotations["example.com/x"]`, `metadata.annotations["example.com/y"]`, false},
	}
	for _, c := range cases {
		re, err := compile(c.pattern)
		if err != nil {
			t.Fatalf("%s: %v", c.pattern, err)
		}
		if got := re.MatchString(c.path); got != c.match {
			t.Errorf("%s ~ %s = %v, want %v", c.pattern, c.path, got, c.match)
		}
	}
}

func TestBadRules(t *testing.T) {
	for spec, want := range map[string]string{
		"Secrets:data":      `--ignore-paths "Secrets:data": "Secrets" is not a kind: write the resource name (pods, nodes, certificates.cert-manager.io) before the colon, or no kind for all`,
		"nodes:status..x":   `--ignore-paths "nodes:status..x": path "status..x" is not a field path: write it like status.conditions[*].lastHeartbeatTime`,
		"nodes:status[x":    `--ignore-paths "nodes:status[x": path "status[x" has an unclosed [`,
		"nodes:status.a b":  `--ignore-paths "nodes:status.a b": path "status.a b": unexpected " ": write it like status.conditions[*].lastHeartbeatTime`,
		"pods:.spec":        `--ignore-paths "pods:.spec": path ".spec" is not a field path: write it like status.conditions[*].lastHeartbeatTime`,
		"configmaps:data[]": "",
	} {
		_, err := New([]string{spec})
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", spec, err)
			}
			continue
		}
		if err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %s", spec, err, want)
		}
	}
}

func pod(rv string, image string) *change.Compact {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-0", UID: "u1", ResourceVersion: rv,
			Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"a": "b"}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: image,
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
	}
	c, err := change.Compacted(p)
	if err != nil {
		panic(err)
	}
	return c.(*change.Compact)
}

func TestCompactResourceVersionOnly(t *testing.T) {
	f, _ := New(Defaults)
	if !f.Ignore("pods", pod("10", "web:1"), pod("11", "web:1")) {
		t.Error("resourceVersion-only pod update not ignored")
	}
	if f.Ignore("pods", pod("10", "web:1"), pod("11", "web:2")) {
		t.Error("image change ignored")
	}
	if f.Ignore("pods", pod("10", "web:1"), pod("1000", "web:1")) == false {
		t.Error("resourceVersion of another length not ignored")
	}
	// Without the resourceVersion rule nothing is ignored.
	g, _ := New([]string{"nodes:status.conditions[*].lastHeartbeatTime"})
	if g.Ignore("pods", pod("10", "web:1"), pod("11", "web:1")) {
		t.Error("ignored without a rule")
	}
	var nilFilter *Filter
	if nilFilter.Ignore("pods", pod("10", "web:1"), pod("11", "web:1")) {
		t.Error("nil filter ignored")
	}
}

// BenchmarkPodUpdate is the noise check's cost per pod update on the compact
// cache form: a real change (the check says publish), a resourceVersion-only
// bump (ignored), and without any rule (the hot path unchanged).
func BenchmarkPodUpdate(b *testing.B) {
	prev := pod("10", "web:1")
	changed := pod("11", "web:2")
	bump := pod("11", "web:1")
	on, _ := New(Defaults)
	off, _ := New(nil)
	for _, bc := range []struct {
		name string
		f    *Filter
		next *change.Compact
	}{{"rules-off", off, changed}, {"changed", on, changed}, {"resourceVersion-only", on, bump}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.f.Ignore("pods", prev, bc.next)
			}
		})
	}
	b.Run("full-decode-and-diff", func(b *testing.B) {
		// What a check costs when the kind has path rules: both states
		// decoded and compared.
		paths, _ := New([]string{"pods:status.conditions[*].lastProbeTime"})
		b.ReportAllocs()
		for b.Loop() {
			paths.Ignore("pods", prev, changed)
		}
	})
}

func TestPathsFlag(t *testing.T) {
	p := NewPaths(Defaults)
	if p.String() != "*:metadata.resourceVersion,nodes:status.conditions[*].lastHeartbeatTime" {
		t.Fatalf("defaults %q", p.String())
	}
	_ = p.Set(`pods:metadata.annotations["a,b"], nodes:status.images`)
	_ = p.Set("deployments:status.observedGeneration")
	want := `pods:metadata.annotations["a,b"],nodes:status.images,deployments:status.observedGeneration`
	if p.String() != want {
		t.Fatalf("got %q, want %q", p.String(), want)
	}
	q := NewPaths(Defaults)
	_ = q.Set("")
	if len(q.Rules()) != 0 {
		t.Fatalf("empty value kept %v", q.Rules())
	}
}
