package imagestorage

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func testOpts() Options {
	o := DefaultOptions()
	o.WarningBytes, o.CriticalBytes = 10*gi, 20*gi
	o.WarningShare, o.CriticalShare = 0, 0
	return o
}

// revise returns a copy of n with a new resourceVersion and images.
func revise(n *corev1.Node, rv string, images ...corev1.ContainerImage) *corev1.Node {
	c := n.DeepCopy()
	c.ResourceVersion = rv
	c.Status.Images = images
	return c
}

func nodeChange(op change.Op, obj, prev *corev1.Node, at time.Time) *change.Change {
	c := &change.Change{Kind: kinds.Nodes, Op: op, ObservedAt: at}
	if obj != nil {
		c.Object = obj
	}
	if prev != nil {
		c.Previous = prev
	}
	return c
}

func one(t *testing.T, out []*change.Change) *kubestreamv1.ImageStorage {
	t.Helper()
	if len(out) != 1 {
		t.Fatalf("derived %d changes, want 1", len(out))
	}
	return out[0].ImageStorage
}

func TestDeriveLifecycle(t *testing.T) {
	tr := NewTracker(testOpts())
	n1 := node("n1", "100Gi", "90Gi", img(4*gi, "a"), img(4*gi, "b"))

	created := nodeChange(change.Created, n1, nil, t0)
	out := tr.Derive(created)
	is := one(t, out)
	d := out[0]
	if d.Kind.Resource != kinds.Nodes.Resource || d.Op != change.Created || d.Object != created.Object || !d.ObservedAt.Equal(t0) || d.Key() != "imagestorage//n1" {
		t.Fatalf("derived change = %+v", d)
	}
	if is.Node != "n1" || is.TotalBytes != 8*gi || is.ImageCount != 2 || is.DeltaBytes != 8*gi || len(is.Added) != 2 ||
		is.EphemeralStorageCapacityBytes != 100*gi || is.EphemeralStorageAllocatableBytes != 90*gi || is.CapacityShare != 0.08 ||
		is.Severity != ok || is.PreviousSeverity != kubestreamv1.Severity_SEVERITY_UNSPECIFIED || is.Transition != none ||
		is.MaxImages != 50 || is.Thresholds.GetCriticalBytes() != 20*gi {
		t.Fatalf("created = %v", is)
	}

	// A heartbeat: new resourceVersion, same images.
	hb := n1.DeepCopy()
	hb.ResourceVersion = "2"
	hb.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if out := tr.Derive(nodeChange(change.Updated, hb, n1, t0.Add(time.Minute))); len(out) != 0 {
		t.Fatalf("heartbeat derived %v", out)
	}
	lbl := hb.DeepCopy()
	lbl.ResourceVersion = "3"
	lbl.Labels = map[string]string{"pool": "a"}
	if out := tr.Derive(nodeChange(change.Updated, lbl, hb, t0.Add(2*time.Minute))); len(out) != 0 {
		t.Fatalf("label update derived %v", out)
	}

	grown := revise(lbl, "4", img(4*gi, "a"), img(4*gi, "b"), img(3*gi, "c"))
	is = one(t, tr.Derive(nodeChange(change.Updated, grown, lbl, t0.Add(3*time.Minute))))
	if is.TotalBytes != 11*gi || is.PreviousTotalBytes != 8*gi || is.DeltaBytes != 3*gi || is.PreviousImageCount != 2 ||
		len(is.Added) != 1 || is.Added[0].Names[0] != "c" || is.Severity != warning || is.PreviousSeverity != ok || is.Transition != firing {
		t.Fatalf("grown = %v", is)
	}
	if len(is.TopImages) != 3 || is.TopImages[2].Names[0] != "c" {
		t.Fatalf("top = %v", is.TopImages)
	}

	snap := nodeChange(change.Snapshot, grown, nil, t0.Add(4*time.Minute))
	snap.ReplayID = "r1"
	out = tr.Derive(snap)
	is = one(t, out)
	if out[0].Op != change.Snapshot || out[0].ReplayID != "r1" || is.PreviousTotalBytes != 0 || len(is.Added) != 0 ||
		is.Severity != warning || is.PreviousSeverity != warning || is.Transition != none {
		t.Fatalf("snapshot = %v %v", out[0], is)
	}

	resized := revise(grown, "5", img(4*gi, "a"), img(4*gi, "b"), img(3*gi+5, "c"))
	is = one(t, tr.Derive(nodeChange(change.Updated, resized, grown, t0.Add(5*time.Minute))))
	if len(is.Resized) != 1 || is.Resized[0].PreviousSizeBytes != 3*gi || is.DeltaBytes != 5 || len(is.Added)+len(is.Removed) != 0 || is.Transition != none {
		t.Fatalf("resized = %v", is)
	}

	del := nodeChange(change.Deleted, nil, resized, t0.Add(6*time.Minute))
	del.FinalStateUnknown = true
	out = tr.Derive(del)
	is = one(t, out)
	if out[0].Op != change.Deleted || out[0].Previous != del.Previous || !out[0].FinalStateUnknown || !is.NodeDeleted ||
		is.TotalBytes != 0 || is.PreviousTotalBytes != 11*gi+5 || is.DeltaBytes != -(11*gi+5) ||
		is.Severity != ok || is.PreviousSeverity != warning || is.Transition != resolved || is.Reason != "node deleted" {
		t.Fatalf("deleted = %v", is)
	}
	if tr.Nodes() != 0 {
		t.Fatalf("state of %d nodes left after delete", tr.Nodes())
	}
}

func TestDeriveIgnoresOtherChanges(t *testing.T) {
	tr := NewTracker(testOpts())
	n := node("n1", "", "", img(1, "a"))
	for _, c := range []*change.Change{
		{Kind: kinds.Pods, Op: change.Created, Object: n},
		{Op: change.ReplayBegin, ReplayID: "r"},
		{Kind: kinds.Nodes, Op: change.Created, Object: n, ImageStorage: &kubestreamv1.ImageStorage{}},
	} {
		if out := tr.Derive(c); len(out) != 0 {
			t.Fatalf("Derive(%v) = %v", c, out)
		}
	}
	off := testOpts()
	off.Enabled = false
	if out := NewTracker(off).Derive(nodeChange(change.Created, n, nil, t0)); len(out) != 0 {
		t.Fatal("a disabled tracker derived a change")
	}
}

func TestDeriveCapacityChangeAndLowerBound(t *testing.T) {
	o := testOpts()
	o.MaxImages = 2
	tr := NewTracker(o)
	n := node("n1", "100Gi", "", img(1, "a"))
	tr.Derive(nodeChange(change.Created, n, nil, t0))
	bigger := n.DeepCopy()
	bigger.ResourceVersion = "2"
	bigger.Status.Capacity[corev1.ResourceEphemeralStorage] = *resourceQ("200Gi")
	is := one(t, tr.Derive(nodeChange(change.Updated, bigger, n, t0)))
	if is.EphemeralStorageCapacityBytes != 200*gi || is.DeltaBytes != 0 {
		t.Fatalf("capacity change = %v", is)
	}
	full := revise(bigger, "3", img(1, "a"), img(2, "b"))
	is = one(t, tr.Derive(nodeChange(change.Updated, full, bigger, t0)))
	if !is.LowerBound || is.MaxImages != 2 || !contains(is.Reason, "lower bound") {
		t.Fatalf("full list = %v", is)
	}
	// Full list, one image swapped for another of the same size: a change.
	swapped := revise(full, "4", img(1, "a"), img(2, "z"))
	is = one(t, tr.Derive(nodeChange(change.Updated, swapped, full, t0)))
	if is.DeltaBytes != 0 || len(is.Added) != 1 || len(is.Removed) != 1 {
		t.Fatalf("swap = %v", is)
	}
}

func TestDeriveRecreatedNodeStartsFresh(t *testing.T) {
	tr := NewTracker(testOpts())
	n := node("n1", "", "", img(15*gi, "a"))
	if is := one(t, tr.Derive(nodeChange(change.Created, n, nil, t0))); is.Transition != firing {
		t.Fatalf("created warning node: %v", is)
	}
	// The delete was missed entirely; the same name comes back with a new
	// uid on a snapshot: first sight again.
	again := n.DeepCopy()
	again.UID = types.UID("other")
	s := nodeChange(change.Snapshot, again, nil, t0)
	s.ReplayID = "r"
	is := one(t, tr.Derive(s))
	if is.PreviousSeverity != kubestreamv1.Severity_SEVERITY_UNSPECIFIED || is.Transition != firing {
		t.Fatalf("recreated = %v", is)
	}
	// A delete of the old uid must not drop the new node's state.
	tr.Derive(nodeChange(change.Deleted, nil, n, t0))
	if tr.Nodes() != 1 {
		t.Fatalf("nodes = %d", tr.Nodes())
	}
}

func TestDeriveGrowth(t *testing.T) {
	o := testOpts()
	o.WarningBytes, o.CriticalBytes = 0, 0
	o.WarningGrowth, o.CriticalGrowth = float64(5*gi), float64(20*gi)
	o.GrowthWindow = time.Hour
	tr := NewTracker(o)
	n := node("n1", "", "", img(10*gi, "a"))
	is := one(t, tr.Derive(nodeChange(change.Created, n, nil, t0)))
	if is.GrowthBytesPerHour != 0 {
		t.Fatalf("growth on first sight = %v", is.GrowthBytesPerHour)
	}
	prev := n
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	// +2Gi at 30m: not a full window of history yet.
	cur := revise(prev, "2", img(10*gi, "a"), img(2*gi, "b"))
	is = one(t, tr.Derive(nodeChange(change.Updated, cur, prev, at(30))))
	if is.GrowthBytesPerHour != 0 || is.Severity != ok {
		t.Fatalf("30m = %v", is)
	}
	prev = cur
	// +5Gi at 61m: one hour ago the node had 10Gi, now 17Gi: 7Gi/h.
	cur = revise(prev, "3", img(10*gi, "a"), img(2*gi, "b"), img(5*gi, "c"))
	is = one(t, tr.Derive(nodeChange(change.Updated, cur, prev, at(61))))
	if is.GrowthBytesPerHour != float64(7*gi) || is.Severity != warning || is.Transition != firing {
		t.Fatalf("61m = %v", is)
	}
	prev = cur
	// A heartbeat at 95m: one window ago (35m) the node had 12Gi: 5Gi/h,
	// still at the threshold. Severity unchanged: nothing emitted.
	hb := prev.DeepCopy()
	hb.ResourceVersion = "4"
	if out := tr.Derive(nodeChange(change.Updated, hb, prev, at(95))); len(out) != 0 {
		t.Fatalf("95m heartbeat derived %v", out[0].ImageStorage)
	}
	prev = hb
	// A heartbeat at 150m: no growth in the last hour; the severity resolves,
	// which is an image-storage change even without new images.
	hb2 := prev.DeepCopy()
	hb2.ResourceVersion = "5"
	is = one(t, tr.Derive(nodeChange(change.Updated, hb2, prev, at(150))))
	if is.GrowthBytesPerHour != 0 || is.Severity != ok || is.Transition != resolved || is.DeltaBytes != 0 {
		t.Fatalf("150m = %v", is)
	}
}

func TestHistoryIsBounded(t *testing.T) {
	var h history
	for i := range 100000 {
		h.record(t0.Add(time.Duration(i)*time.Second), int64(i), time.Hour)
	}
	if len(h.points) > 70 {
		t.Fatalf("history holds %d points", len(h.points))
	}
	r, known := h.rate(t0.Add(99999*time.Second), time.Hour)
	if !known || r < 3500 || r > 3600 {
		t.Fatalf("rate = %v %v, want about 3600 bytes/h", r, known)
	}
}

func TestTrackerConcurrentUse(t *testing.T) {
	tr := NewTracker(testOpts())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				n := node(fmt.Sprintf("n%d", i%16), "100Gi", "", img(int64(g*i)*gi/10, "a"))
				prev := revise(n, "0")
				tr.Derive(nodeChange(change.Updated, n, prev, t0.Add(time.Duration(i)*time.Second)))
				if i%50 == 49 {
					tr.Derive(nodeChange(change.Deleted, nil, n, t0))
				}
			}
		}()
	}
	wg.Wait()
	if tr.Nodes() > 16 {
		t.Fatalf("state of %d nodes for 16 names", tr.Nodes())
	}
}

func BenchmarkDeriveHeartbeat(b *testing.B) {
	tr := NewTracker(testOpts())
	var imgs []corev1.ContainerImage
	for i := range 50 {
		imgs = append(imgs, img(int64(i+1)*100<<20, fmt.Sprintf("reg/app%d@sha256:%064d", i, i), fmt.Sprintf("reg/app%d:v1", i)))
	}
	n := node("n1", "100Gi", "90Gi", imgs...)
	tr.Derive(nodeChange(change.Created, n, nil, t0))
	hb := n.DeepCopy()
	hb.ResourceVersion = "2"
	c := nodeChange(change.Updated, hb, n, t0)
	b.ReportAllocs()
	for b.Loop() {
		if out := tr.Derive(c); len(out) != 0 {
			b.Fatal("heartbeat derived a change")
		}
	}
}

func BenchmarkDeriveImagePulled(b *testing.B) {
	tr := NewTracker(testOpts())
	var imgs []corev1.ContainerImage
	for i := range 50 {
		imgs = append(imgs, img(int64(i+1)*100<<20, fmt.Sprintf("reg/app%d@sha256:%064d", i, i), fmt.Sprintf("reg/app%d:v1", i)))
	}
	n := node("n1", "100Gi", "90Gi", imgs[:49]...)
	tr.Derive(nodeChange(change.Created, n, nil, t0))
	next := revise(n, "2", imgs...)
	c := nodeChange(change.Updated, next, n, t0)
	b.ReportAllocs()
	for b.Loop() {
		if out := tr.Derive(c); len(out) != 1 {
			b.Fatal("pull derived no change")
		}
	}
}

func resourceQ(s string) *resource.Quantity { q := resource.MustParse(s); return &q }

func contains(s, sub string) bool { return strings.Contains(s, sub) }
