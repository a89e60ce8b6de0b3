package source

import (
	"fmt"
	"testing"

	"github.com/kubestream/kubestream/internal/testobj"
	"github.com/kubestream/kubestream/pkg/noise"
)

// An update that changes only the resourceVersion is queued as Advanced, not
// as an update, and still reaches the derivers; replay rounds snapshot its
// newer state; a real change after it is an update as usual.
func TestIgnoredUpdateAdvancesAndStillDerives(t *testing.T) {
	q := &sliceQueue{}
	h := newHandler(q, echoDeriver{})
	f, err := noise.New(noise.Defaults)
	if err != nil {
		t.Fatal(err)
	}
	h.s.opts.Ignore = f
	v1 := testobj.ConfigMap("ns", "a", "u1", "1", map[string]string{"k": "x"})
	v2 := testobj.ConfigMap("ns", "a", "u1", "2", map[string]string{"k": "x"})
	v3 := testobj.ConfigMap("ns", "a", "u1", "3", map[string]string{"k": "y"})
	h.OnAdd(v1, false)
	h.OnUpdate(v1, v2)
	h.OnUpdate(v2, v3)
	var got []string
	for _, c := range q.changes {
		got = append(got, fmt.Sprintf("%s@%s/%s", c.Op, c.Subject().GetResourceVersion(), c.ReplayID))
	}
	if fmt.Sprint(got) != "[created@1/ created@1/derived advanced@2/ updated@2/derived updated@3/ updated@3/derived]" {
		t.Fatalf("changes %v", got)
	}
	if h.w.emitted["ns/a"] != v3 || f.Ignored()["configmaps"] != 1 {
		t.Fatalf("emitted %v, ignored %v", h.w.emitted["ns/a"], f.Ignored())
	}
	if q.changes[2].Previous != v1 {
		t.Fatal("the advanced change must keep the state consumers have as previous")
	}
}
