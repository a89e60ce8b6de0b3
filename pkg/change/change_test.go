package change_test

import (
	"testing"

	"github.com/kubestream/kubestream/internal/testobj"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
)

func cm(uid, rv string) change.Object { return testobj.ConfigMap("ns", "a.b", uid, rv, nil) }

func TestCoalesce(t *testing.T) {
	v1, v2, v3 := cm("u1", "1"), cm("u1", "2"), cm("u1", "3")
	other := cm("u2", "9")
	mk := func(op change.Op, obj, prev change.Object) *change.Change {
		return &change.Change{Kind: kinds.ConfigMaps, Op: op, Object: obj, Previous: prev}
	}
	tests := []struct {
		name          string
		pending, next *change.Change
		wantOK        bool
		wantOp        change.Op
		wantObj       change.Object
		wantPrev      change.Object
	}{
		{"created then updated keeps create with new state", mk(change.Created, v1, nil), mk(change.Updated, v2, v1), true, change.Created, v2, nil},
		{"updated twice spans both", mk(change.Updated, v2, v1), mk(change.Updated, v3, v2), true, change.Updated, v3, v1},
		{"a live update replaces a pending snapshot", mk(change.Snapshot, v1, nil), mk(change.Updated, v2, v1), true, change.Updated, v2, v1},
		{"a snapshot folds into a pending update", mk(change.Updated, v2, v1), mk(change.Snapshot, v2, nil), true, change.Updated, v2, v1},
		{"updated then deleted is a delete with the final state", mk(change.Updated, v2, v1), mk(change.Deleted, nil, v3), true, change.Deleted, nil, v3},
		{"snapshot then deleted is the delete", mk(change.Snapshot, v1, nil), mk(change.Deleted, nil, v2), true, change.Deleted, nil, v2},
		{"nothing folds into a delete", mk(change.Deleted, nil, v1), mk(change.Created, other, nil), false, 0, nil, nil},
		{"different uids stay apart", mk(change.Updated, v2, v1), mk(change.Updated, other, other), false, 0, nil, nil},
		{"an ignored update moves a pending create to the newer state", mk(change.Created, v1, nil), mk(change.Advanced, v2, v1), true, change.Created, v2, nil},
		{"an ignored update moves a pending update to the newer state", mk(change.Updated, v2, v1), mk(change.Advanced, v3, v2), true, change.Updated, v3, v1},
		{"an ignored update moves a pending snapshot to the newer state", mk(change.Snapshot, v1, nil), mk(change.Advanced, v2, v1), true, change.Snapshot, v2, nil},
		{"ignored updates fold into one", mk(change.Advanced, v2, v1), mk(change.Advanced, v3, v2), true, change.Advanced, v3, v1},
		{"an update after an ignored one starts from what consumers have", mk(change.Advanced, v2, v1), mk(change.Updated, v3, v2), true, change.Updated, v3, v1},
		{"a delete after an ignored update is the delete", mk(change.Advanced, v2, v1), mk(change.Deleted, nil, v3), true, change.Deleted, nil, v3},
		{"heartbeats never fold", &change.Change{Kind: kinds.ConfigMaps, Op: change.Heartbeat}, &change.Change{Kind: kinds.ConfigMaps, Op: change.Heartbeat}, false, 0, nil, nil},
		{"markers never fold", &change.Change{Op: change.ReplayBegin}, &change.Change{Op: change.ReplayEnd}, false, 0, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := change.Coalesce(tt.pending, tt.next)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			if got == nil {
				t.Fatal("the two changes cancelled out, want a merged change")
			}
			if got.Op != tt.wantOp || got.Object != tt.wantObj || got.Previous != tt.wantPrev {
				t.Fatalf("got op=%v object=%v previous=%v, want op=%v object=%v previous=%v", got.Op, got.Object, got.Previous, tt.wantOp, tt.wantObj, tt.wantPrev)
			}
		})
	}
}

func TestCoalesceKeepsReplayID(t *testing.T) {
	snap := &change.Change{Kind: kinds.ConfigMaps, Op: change.Snapshot, Object: cm("u1", "1"), ReplayID: "r1"}
	got, ok := change.Coalesce(&change.Change{Kind: kinds.ConfigMaps, Op: change.Updated, Object: cm("u1", "1")}, snap)
	if !ok || got.ReplayID != "" || got.Op != change.Updated {
		t.Fatalf("snapshot into update: got %+v ok=%v, want an update without replay id", got, ok)
	}
	got, ok = change.Coalesce(snap, &change.Change{Kind: kinds.ConfigMaps, Op: change.Snapshot, Object: cm("u1", "1"), ReplayID: "r1"})
	if !ok || got.ReplayID != "r1" || got.Op != change.Snapshot {
		t.Fatalf("snapshot into snapshot: got %+v ok=%v, want the snapshot's replay id", got, ok)
	}
}

// An object created and deleted before anything was published leaves no
// trace: no consumer saw its uid, and a name re-created over and over during
// an outage costs nothing per incarnation.
func TestCoalesceCreatedThenDeletedCancelsOut(t *testing.T) {
	created := &change.Change{Kind: kinds.ConfigMaps, Op: change.Created, Object: cm("u1", "1")}
	deleted := &change.Change{Kind: kinds.ConfigMaps, Op: change.Deleted, Previous: cm("u1", "2")}
	got, ok := change.Coalesce(created, deleted)
	if !ok || got != nil {
		t.Fatalf("got %+v ok=%v, want both gone", got, ok)
	}
}

func TestCoalesceImageStorageKeepsTransitions(t *testing.T) {
	node := cm("n1", "1")
	is := func(tr kubestreamv1.AlertTransition, prev, total int64, added ...string) *change.Change {
		s := &kubestreamv1.ImageStorage{Transition: tr, PreviousTotalBytes: prev, TotalBytes: total}
		for _, a := range added {
			s.Added = append(s.Added, &kubestreamv1.Image{Names: []string{a}})
		}
		return &change.Change{Kind: kinds.Nodes, Op: change.Updated, Object: node, ImageStorage: s}
	}
	none := kubestreamv1.AlertTransition_ALERT_TRANSITION_NONE
	firing := kubestreamv1.AlertTransition_ALERT_TRANSITION_FIRING
	if _, ok := change.Coalesce(is(firing, 0, 10), is(none, 10, 20)); ok {
		t.Fatal("a firing event was folded away")
	}
	if _, ok := change.Coalesce(is(none, 0, 10), is(firing, 10, 20)); ok {
		t.Fatal("folded into a firing event")
	}
	got, ok := change.Coalesce(is(none, 5, 10, "a"), is(none, 10, 30, "b"))
	if !ok {
		t.Fatal("quiet image-storage events did not fold")
	}
	s := got.ImageStorage
	if s.PreviousTotalBytes != 5 || s.TotalBytes != 30 || s.DeltaBytes != 25 || len(s.Added) != 2 {
		t.Fatalf("folded event = %v, want previous 5, total 30, delta 25, two added", s)
	}
}

func TestKeySeparatesKindsAndDerivedStreams(t *testing.T) {
	obj := cm("u1", "1")
	c := &change.Change{Kind: kinds.ConfigMaps, Op: change.Created, Object: obj}
	if got := c.Key(); got != "configmaps/ns/a.b" {
		t.Fatalf("key = %q", got)
	}
	d := &change.Change{Kind: kinds.ConfigMaps, Op: change.Deleted, Previous: obj, ImageStorage: &kubestreamv1.ImageStorage{}}
	if got := d.Key(); got != "imagestorage/ns/a.b" {
		t.Fatalf("derived key = %q", got)
	}
}

func TestCoalesceImageStorageFoldsResizes(t *testing.T) {
	node := cm("n1", "1")
	mk := func(prevSize, size int64, extra func(s *kubestreamv1.ImageStorage)) *change.Change {
		s := &kubestreamv1.ImageStorage{Transition: kubestreamv1.AlertTransition_ALERT_TRANSITION_NONE}
		s.Resized = []*kubestreamv1.ImageResize{{Names: []string{"web"}, SizeBytes: size, PreviousSizeBytes: prevSize}}
		if extra != nil {
			extra(s)
		}
		return &change.Change{Kind: kinds.Nodes, Op: change.Updated, Object: node, ImageStorage: s}
	}
	got, ok := change.Coalesce(mk(100, 150, nil), mk(150, 200, nil))
	if !ok || len(got.ImageStorage.Resized) != 1 {
		t.Fatalf("two resizes did not fold into one: %v", got)
	}
	if r := got.ImageStorage.Resized[0]; r.PreviousSizeBytes != 100 || r.SizeBytes != 200 {
		t.Fatalf("folded resize %v, want 100 -> 200", r)
	}
	back, _ := change.Coalesce(mk(100, 150, nil), mk(150, 100, nil))
	if len(back.ImageStorage.Resized) != 0 {
		t.Fatalf("a resize undone by the next one is still reported: %v", back.ImageStorage.Resized)
	}
	removed, _ := change.Coalesce(mk(100, 150, nil), &change.Change{Kind: kinds.Nodes, Op: change.Updated, Object: node,
		ImageStorage: &kubestreamv1.ImageStorage{Transition: kubestreamv1.AlertTransition_ALERT_TRANSITION_NONE, Removed: []*kubestreamv1.Image{{Names: []string{"web"}, SizeBytes: 150}}}})
	if len(removed.ImageStorage.Resized) != 0 || len(removed.ImageStorage.Removed) != 1 {
		t.Fatalf("resized then removed: %v", removed.ImageStorage)
	}
}
