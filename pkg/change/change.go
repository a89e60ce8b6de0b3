// Package change defines Change, what the source hands the pipeline: one
// observed add, update or delete of a Kubernetes object, a snapshot of one,
// a replay marker, or a derived image-storage event. It also holds the rules
// for coalescing the pending changes of one object.
package change

import (
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// Object is a Kubernetes object as the informer cache holds it. Objects are
// shared with the cache: never mutate one.
type Object interface {
	metav1.Object
	runtime.Object
}

// Op is what happened to an object.
type Op int

// The operations. Their values mirror kubestreamv1.Operation.
const (
	Created     = Op(kubestreamv1.Operation_OPERATION_CREATED)
	Updated     = Op(kubestreamv1.Operation_OPERATION_UPDATED)
	Deleted     = Op(kubestreamv1.Operation_OPERATION_DELETED)
	Snapshot    = Op(kubestreamv1.Operation_OPERATION_SNAPSHOT)
	ReplayBegin = Op(kubestreamv1.Operation_OPERATION_REPLAY_BEGIN)
	ReplayEnd   = Op(kubestreamv1.Operation_OPERATION_REPLAY_END)
	Heartbeat   = Op(kubestreamv1.Operation_OPERATION_HEARTBEAT)
	// Advanced is an update that is not published (it changed only ignored
	// paths): once the object's earlier changes are acknowledged, its
	// resourceVersion is recorded as if it had been, so a restart does not
	// send it. It has no wire operation.
	Advanced Op = 100
)

func (o Op) String() string {
	switch o {
	case Created:
		return "created"
	case Updated:
		return "updated"
	case Deleted:
		return "deleted"
	case Snapshot:
		return "snapshot"
	case ReplayBegin:
		return "replay_begin"
	case ReplayEnd:
		return "replay_end"
	case Heartbeat:
		return "heartbeat"
	case Advanced:
		return "advanced"
	}
	return "unknown"
}

// Proto returns the wire operation.
func (o Op) Proto() kubestreamv1.Operation { return kubestreamv1.Operation(o) }

// Replay describes a replay round, carried by ReplayBegin and ReplayEnd.
type Replay struct {
	Reason kubestreamv1.ReplayReason
	Kinds  []string
	// Counts is set on ReplayEnd: objects the round covered per kind.
	Counts map[string]int64
	// PendingKeys, set by the pipeline on a ReplayEnd that went out before
	// some keys' events were acknowledged, names those keys;
	// PendingKeysTruncated says there were more.
	PendingKeys          []string
	PendingKeysTruncated bool
}

// Change is one thing to publish.
type Change struct {
	Kind kinds.Kind
	Op   Op
	// Object is the new state: set for Created, Updated and Snapshot.
	Object Object
	// Previous is the prior state on Updated and the final state on Deleted.
	Previous Object
	// FinalStateUnknown marks a delete inferred from a tombstone or a resume.
	FinalStateUnknown bool
	// PreviousUnknown marks an update sent by a resume: the state before is
	// not known.
	PreviousUnknown bool
	// ReplayID is set on snapshots and markers.
	ReplayID string
	// Replay is set on markers.
	Replay *Replay
	// ImageStorage is set on derived image-storage events; Object or Previous
	// is the node it was derived from.
	ImageStorage *kubestreamv1.ImageStorage
	// Heartbeat is set on heartbeats: the kind's watermark (Kind is the
	// kind). The pipeline fills in the pending keys.
	Heartbeat  *kubestreamv1.Heartbeat
	ObservedAt time.Time
}

// IsMarker reports whether c is a replay marker.
func (c *Change) IsMarker() bool { return c.Op == ReplayBegin || c.Op == ReplayEnd }

// Subject returns the object the change is about: Object, or Previous on
// deletes.
func (c *Change) Subject() Object {
	if c.Object != nil {
		return c.Object
	}
	return c.Previous
}

// HeartbeatKeyPrefix starts the pipeline key of a kind's heartbeats.
const HeartbeatKeyPrefix = "heartbeat/"

// Key identifies the stream a change belongs to: all changes with one key are
// published in order. It is kind/namespace/name, not the uid, so that a
// delete and a re-create under the same name stay in order. Image-storage
// events have their own key per node, heartbeats one per kind. Markers have
// no key.
func (c *Change) Key() string {
	if c.IsMarker() {
		return ""
	}
	if c.Op == Heartbeat {
		return HeartbeatKeyPrefix + c.Kind.Resource
	}
	o := c.Subject()
	res := c.Kind.Resource
	if c.ImageStorage != nil {
		res = kinds.ImageStorage
	}
	return res + "/" + o.GetNamespace() + "/" + o.GetName()
}

// UID returns the uid of the object the change is about.
func (c *Change) UID() string {
	if o := c.Subject(); o != nil {
		return string(o.GetUID())
	}
	return ""
}

// Coalesce folds next into pending, two changes of the same key where pending
// has not been handed to the sink yet and no replay marker lies between
// them (the pipeline checks both), so a consumer that falls behind sees the
// latest state instead of every step. It reports false when both must be
// kept: changes of different uids (a delete followed by a re-create),
// anything after a delete, and image-storage events that change an alert's
// state, which a pager must see one by one. It reports (nil, true) when the
// two cancel out: an object created and deleted before any consumer could
// see it.
//
// The rules, for one uid:
//
//	created  + updated  -> created with the new state
//	created  + deleted  -> nothing (no consumer ever saw this uid)
//	updated  + updated  -> updated from the first previous to the last state
//	snapshot + updated  -> the update: a live change replaces the snapshot and
//	                       keeps its own id; the round still mentions the object
//	updated  + snapshot -> updated with the snapshot's state
//	any      + deleted  -> deleted with the final state
//	any      + advanced -> the pending change with the newer state (the
//	                       consumer gets the latest state, and the position
//	                       follows it)
//	advanced + updated  -> updated from the advanced change's previous state
//	advanced + other    -> the other
func Coalesce(pending, next *Change) (*Change, bool) {
	if pending.IsMarker() || next.IsMarker() || pending.Op == Deleted || pending.Op == Heartbeat || next.Op == Heartbeat {
		return nil, false
	}
	if pending.UID() != next.UID() {
		return nil, false
	}
	if pending.ImageStorage != nil || next.ImageStorage != nil {
		return coalesceImageStorage(pending, next)
	}
	if next.Op == Advanced {
		if pending.Op == Advanced {
			merged := *next
			merged.Previous = pending.Previous
			return &merged, true
		}
		merged := *pending
		merged.Object = next.Object
		return &merged, true
	}
	merged := *next
	switch next.Op {
	case Deleted:
		if pending.Op == Created {
			return nil, true
		}
		return &merged, true
	case Updated, Snapshot, Created:
		switch pending.Op {
		case Created:
			merged.Op = Created
			merged.ReplayID = ""
			merged.Previous = nil
		case Snapshot:
			if next.Op == Updated {
				return &merged, true
			}
			merged.Op = Snapshot
			merged.ReplayID = pending.ReplayID
			merged.Previous = nil
		case Updated:
			merged.Op = Updated
			merged.ReplayID = ""
			merged.Previous = pending.Previous
		case Advanced:
			if next.Op == Updated {
				merged.Previous = pending.Previous
			}
		}
		return &merged, true
	}
	return nil, false
}

// coalesceImageStorage keeps alert transitions: only events that do not
// change the alert state fold into each other.
func coalesceImageStorage(pending, next *Change) (*Change, bool) {
	if pending.ImageStorage == nil || next.ImageStorage == nil {
		return nil, false
	}
	if transitions(pending.ImageStorage) || transitions(next.ImageStorage) {
		return nil, false
	}
	merged := *next
	merged.ImageStorage = foldImageStorage(pending.ImageStorage, next.ImageStorage)
	if next.Op != Deleted && (pending.Op == Snapshot || pending.Op == Created) {
		merged.Op = pending.Op
		merged.ReplayID = pending.ReplayID
	}
	return &merged, true
}

func transitions(s *kubestreamv1.ImageStorage) bool {
	t := s.GetTransition()
	return t != kubestreamv1.AlertTransition_ALERT_TRANSITION_NONE && t != kubestreamv1.AlertTransition_ALERT_TRANSITION_UNSPECIFIED
}

// foldImageStorage returns next measured against pending's starting point, so
// the folded event still says where storage came from.
func foldImageStorage(pending, next *kubestreamv1.ImageStorage) *kubestreamv1.ImageStorage {
	out := proto.Clone(next).(*kubestreamv1.ImageStorage)
	out.PreviousTotalBytes = pending.GetPreviousTotalBytes()
	out.PreviousImageCount = pending.GetPreviousImageCount()
	out.DeltaBytes = out.GetTotalBytes() - out.GetPreviousTotalBytes()
	out.PreviousSeverity = pending.GetPreviousSeverity()
	added := map[string]*kubestreamv1.Image{}
	removed := map[string]*kubestreamv1.Image{}
	resized := map[string]*kubestreamv1.ImageResize{}
	apply := func(s *kubestreamv1.ImageStorage) {
		for _, r := range s.GetResized() {
			id := firstName(r.GetNames())
			switch {
			case added[id] != nil:
				// Added, then resized: still an addition, at the new size.
				added[id] = &kubestreamv1.Image{Names: r.GetNames(), SizeBytes: r.GetSizeBytes()}
			case resized[id] != nil:
				first := resized[id]
				resized[id] = &kubestreamv1.ImageResize{Names: r.GetNames(), SizeBytes: r.GetSizeBytes(),
					PreviousSizeBytes: first.GetPreviousSizeBytes(), PreviousNames: first.GetPreviousNames()}
			default:
				resized[id] = r
			}
		}
		for _, img := range s.GetAdded() {
			id := imageID(img)
			if _, ok := removed[id]; ok {
				delete(removed, id)
				continue
			}
			added[id] = img
		}
		for _, img := range s.GetRemoved() {
			id := imageID(img)
			delete(resized, id)
			if _, ok := added[id]; ok {
				delete(added, id)
				continue
			}
			removed[id] = img
		}
	}
	apply(pending)
	apply(next)
	out.Added = sortedImages(added)
	out.Removed = sortedImages(removed)
	out.Resized = out.Resized[:0]
	for _, r := range resized {
		if r.GetSizeBytes() != r.GetPreviousSizeBytes() {
			out.Resized = append(out.Resized, r)
		}
	}
	sort.Slice(out.Resized, func(i, j int) bool {
		return firstName(out.Resized[i].GetNames()) < firstName(out.Resized[j].GetNames())
	})
	return out
}

func firstName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

func imageID(img *kubestreamv1.Image) string { return firstName(img.GetNames()) }

func sortedImages(m map[string]*kubestreamv1.Image) []*kubestreamv1.Image {
	out := make([]*kubestreamv1.Image, 0, len(m))
	for _, img := range m {
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return imageID(out[i]) < imageID(out[j]) })
	return out
}
