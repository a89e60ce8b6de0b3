package source

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/kubestream/kubestream/internal/testobj"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/resume"
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
	w := &watchedKind{kind: kinds.ConfigMaps, emitted: map[string]change.Object{}, active: true}
	s.watched = []*watchedKind{w}
	return &handler{s: s, w: w}
}

// The initial list is held until Activate sends it as one round; live
// creates after it are changes.
func TestInitialListIsSentAsARoundByActivate(t *testing.T) {
	q := &sliceQueue{}
	h := newHandler(q)
	h.w.active = false
	h.OnAdd(testobj.ConfigMap("ns", "listed", "u1", "1", nil), true)
	if len(q.changes) != 0 {
		t.Fatalf("%d changes before Activate, want none", len(q.changes))
	}
	st := h.s.Activate(context.Background(), ActivateOptions{})
	h.OnAdd(testobj.ConfigMap("ns", "created", "u2", "2", nil), false)
	var got []string
	for _, c := range q.changes {
		got = append(got, c.Op.String())
	}
	if fmt.Sprint(got) != "[replay_begin snapshot replay_end created]" {
		t.Fatalf("changes = %v", got)
	}
	if q.changes[1].ReplayID != q.changes[0].ReplayID || q.changes[3].ReplayID != "" {
		t.Fatal("the snapshot must carry its round's replay id, the live create none")
	}
	if st.Reason != kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL || st.Snapshots["configmaps"] != 1 {
		t.Fatalf("stats %+v", st)
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

// A resume sends the difference between the saved positions and what exists:
// new keys and uids are created (a replaced uid deleted first), changed
// resourceVersions updated with the previous state unknown, intents (saved
// uid without a resourceVersion) created again, saved keys gone deleted, and
// unchanged objects not at all.
func TestResumeSendsTheDifference(t *testing.T) {
	q := &sliceQueue{}
	h := newHandler(q)
	h.w.active = false
	for _, o := range []*corev1.ConfigMap{
		testobj.ConfigMap("ns", "same", "u1", "10", nil),
		testobj.ConfigMap("ns", "changed", "u2", "21", nil),
		testobj.ConfigMap("ns", "replaced", "u3-new", "30", nil),
		testobj.ConfigMap("ns", "new", "u4", "40", nil),
		testobj.ConfigMap("ns", "intended", "u6", "60", nil),
	} {
		h.OnAdd(o, true)
	}
	saved := resume.Positions{
		"configmaps/ns/same":     {{UID: "u1", ResourceVersion: "10"}},
		"configmaps/ns/changed":  {{UID: "u2", ResourceVersion: "20"}},
		"configmaps/ns/replaced": {{UID: "u3-old", ResourceVersion: "29"}},
		"configmaps/ns/gone":     {{UID: "u5", ResourceVersion: "50"}},
		"configmaps/ns/intended": {{UID: "u6"}},
	}
	st := h.s.Activate(context.Background(), ActivateOptions{Saved: saved})
	got := map[string]string{}
	for _, c := range q.changes {
		if c.IsMarker() {
			if c.Replay.Reason != kubestreamv1.ReplayReason_REPLAY_REASON_RESUME {
				t.Errorf("marker reason %v, want RESUME", c.Replay.Reason)
			}
			continue
		}
		desc := c.Op.String()
		if c.FinalStateUnknown {
			desc += " final-state-unknown"
		}
		if c.PreviousUnknown {
			desc += " previous-unknown"
		}
		got[c.UID()] += desc
	}
	want := map[string]string{
		"u2":     "updated previous-unknown",
		"u3-old": "deleted final-state-unknown",
		"u3-new": "created",
		"u4":     "created",
		"u5":     "deleted final-state-unknown",
		"u6":     "created",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("resume sent %v, want %v", got, want)
	}
	if st.Equal["configmaps"] != 1 {
		t.Fatalf("unchanged = %d, want 1", st.Equal["configmaps"])
	}
}

type countingDeriver struct{ n int }

func (d *countingDeriver) Derive(c *change.Change) []*change.Change {
	d.n++
	return echoDeriver{}.Derive(c)
}

// With saved positions and nothing changed, a resume sends no object event,
// and derivers still learn every object (so image-storage alerts that were
// firing before the restart do not fire again).
func TestResumeWithNothingChangedSendsNoObjectEvents(t *testing.T) {
	q := &sliceQueue{}
	d := &countingDeriver{}
	h := newHandler(q, d)
	h.w.active = false
	saved := resume.Positions{}
	for i := range 50 {
		o := testobj.ConfigMap("ns", fmt.Sprintf("cm-%d", i), fmt.Sprintf("u%d", i), "7", nil)
		h.OnAdd(o, true)
		saved[stateKey("configmaps", o)] = []resume.Entry{{UID: string(o.UID), ResourceVersion: "7"}}
	}
	h.s.Activate(context.Background(), ActivateOptions{Saved: saved})
	for _, c := range q.changes {
		if !c.IsMarker() {
			t.Fatalf("resume with nothing changed sent %s %s", c.Op, c.Key())
		}
	}
	if d.n != 50 {
		t.Fatalf("derivers saw %d objects, want all 50", d.n)
	}
}
