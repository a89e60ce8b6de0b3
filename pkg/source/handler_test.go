package source

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/client-go/tools/cache"

	"github.com/kubestream/kubestream/internal/testobj"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
)

type sliceQueue struct{ changes []*change.Change }

func (q *sliceQueue) Enqueue(c *change.Change) bool { q.changes = append(q.changes, c); return true }

type echoDeriver struct{}

func (echoDeriver) Derive(c *change.Change) []*change.Change {
	d := *c
	d.ReplayID = "derived"
	return []*change.Change{&d}
}

func newHandler(q Queue, derivers ...Deriver) *handler {
	s := &Source{opts: Options{Queue: q, Now: func() time.Time { return time.Unix(1, 0) }, Derivers: derivers}, initialID: "init"}
	return &handler{s: s, w: &watchedKind{kind: kinds.ConfigMaps, emitted: map[string]change.Object{}}}
}

func TestHandlerTellsInitialListFromLiveCreates(t *testing.T) {
	q := &sliceQueue{}
	h := newHandler(q)
	h.OnAdd(testobj.ConfigMap("ns", "listed", "u1", "1", nil), true)
	h.OnAdd(testobj.ConfigMap("ns", "created", "u2", "2", nil), false)
	if len(q.changes) != 2 {
		t.Fatalf("%d changes", len(q.changes))
	}
	if c := q.changes[0]; c.Op != change.Snapshot || c.ReplayID != "init" {
		t.Fatalf("initial list item: op %v replay %q", c.Op, c.ReplayID)
	}
	if c := q.changes[1]; c.Op != change.Created || c.ReplayID != "" {
		t.Fatalf("live create: op %v replay %q", c.Op, c.ReplayID)
	}
	if h.w.initialCount.Load() != 1 {
		t.Fatalf("initial count %d", h.w.initialCount.Load())
	}
}

func TestHandlerDropsUnchangedRelistUpdates(t *testing.T) {
	q := &sliceQueue{}
	h := newHandler(q)
	obj := testobj.ConfigMap("ns", "x", "u1", "5", nil)
	h.OnUpdate(obj, obj.DeepCopy())
	if len(q.changes) != 0 {
		t.Fatalf("an update with an unchanged resourceVersion produced %d changes", len(q.changes))
	}
	next := obj.DeepCopy()
	next.ResourceVersion = "6"
	h.OnUpdate(obj, next)
	if len(q.changes) != 1 || q.changes[0].Op != change.Updated || q.changes[0].Previous != obj {
		t.Fatalf("real update: %+v", q.changes)
	}
}

func TestHandlerTurnsTombstonesIntoDeletes(t *testing.T) {
	q := &sliceQueue{}
	h := newHandler(q, echoDeriver{})
	last := testobj.ConfigMap("ns", "gone", "u1", "9", nil)
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/gone", Obj: last})
	h.OnDelete(testobj.ConfigMap("ns", "seen", "u2", "3", nil))
	if len(q.changes) != 4 {
		t.Fatalf("%d changes, want 2 deletes and 2 derived", len(q.changes))
	}
	tomb := q.changes[0]
	if tomb.Op != change.Deleted || !tomb.FinalStateUnknown || tomb.Previous != last || tomb.Object != nil {
		t.Fatalf("tombstone delete: %+v", tomb)
	}
	if q.changes[1].ReplayID != "derived" {
		t.Fatal("derivers not called for deletes")
	}
	if seen := q.changes[2]; seen.FinalStateUnknown || seen.Previous.GetName() != "seen" {
		t.Fatalf("watched delete: %+v", seen)
	}
}

// After a relist (HTTP 410) a name deleted and re-created during the gap
// arrives as one update across two uids: consumers keyed by uid must see the
// old uid deleted and the new one created.
func TestHandlerSplitsAnUpdateAcrossUIDsIntoDeleteAndCreate(t *testing.T) {
	q := &sliceQueue{}
	h := newHandler(q)
	old := testobj.ConfigMap("ns", "x", "u1", "1", nil)
	h.OnAdd(old, false)
	h.OnUpdate(old, testobj.ConfigMap("ns", "x", "u2", "5", nil))
	var got []string
	for _, c := range q.changes[1:] {
		got = append(got, c.Op.String()+" "+c.UID())
		if c.Op == change.Deleted && !c.FinalStateUnknown {
			t.Errorf("the old uid's delete is not flagged final_state_unknown")
		}
	}
	if want := "[deleted u1 created u2]"; fmt.Sprint(got) != want {
		t.Fatalf("changes = %v, want %s", got, want)
	}
}

// Replays snapshot the state the handler last emitted, never the informer's
// cache (which is updated before handlers run): a snapshot can then never
// overtake a live change still waiting for the handler.
func TestReplaySnapshotsWhatTheHandlersEmitted(t *testing.T) {
	q := &sliceQueue{}
	h := newHandler(q)
	h.s.watched = []*watchedKind{h.w}
	v1 := testobj.ConfigMap("ns", "x", "u1", "1", nil)
	h.OnAdd(v1, false)
	gone := testobj.ConfigMap("ns", "y", "u2", "2", nil)
	h.OnAdd(gone, false)
	h.OnDelete(gone)
	q.changes = nil
	h.s.Replay(context.Background(), 0)
	var snaps []string
	for _, c := range q.changes {
		if c.Op == change.Snapshot {
			snaps = append(snaps, c.Object.GetName()+"@"+c.Object.GetResourceVersion())
		}
	}
	if fmt.Sprint(snaps) != "[x@1]" {
		t.Fatalf("snapshots = %v, want [x@1]", snaps)
	}
}
