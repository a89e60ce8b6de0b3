// Package event translates changes into wire events. Translation is pure: the
// same change always gives the same event, apart from nothing.
package event

import (
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
)

// SchemaVersion is the version of the wire contract this package writes.
const SchemaVersion = 1

// Translator builds events for one kubestream instance.
type Translator struct {
	// Cluster is the cluster name put on every event.
	Cluster string
	// Instance names this kubestream process.
	Instance string
	// ContentType of object states: protobuf (default) or JSON.
	ContentType kubestreamv1.ContentType
}

// Translate builds the event for a change.
func (t *Translator) Translate(c *change.Change) (*kubestreamv1.Event, error) {
	ev := &kubestreamv1.Event{
		SchemaVersion: SchemaVersion,
		Operation:     c.Op.Proto(),
		Cluster:       t.Cluster,
		Instance:      t.Instance,
		ObservedAt:    timestamppb.New(c.ObservedAt),
		ReplayId:      c.ReplayID,
	}
	if c.IsMarker() {
		if c.Replay == nil {
			return nil, fmt.Errorf("replay marker %s without replay details", c.ReplayID)
		}
		ev.Id = ID("", "", c.Op, c.ReplayID, "replay")
		ev.Payload = &kubestreamv1.Event_Replay{Replay: &kubestreamv1.ReplayMarker{
			ReplayId:     c.ReplayID,
			Reason:       c.Replay.Reason,
			Kinds:        c.Replay.Kinds,
			ObjectCounts: c.Replay.Counts,
		}}
		return ev, nil
	}
	subject := c.Subject()
	if subject == nil {
		return nil, fmt.Errorf("%s change of %s without an object", c.Op, c.Kind.Resource)
	}
	ev.Object = objectRef(c)
	if c.ImageStorage != nil {
		ev.Id = ID(string(subject.GetUID()), subject.GetResourceVersion(), c.Op, c.ReplayID, "imagestorage")
		ev.Payload = &kubestreamv1.Event_ImageStorage{ImageStorage: c.ImageStorage}
		return ev, nil
	}
	ev.Id = ID(string(subject.GetUID()), subject.GetResourceVersion(), c.Op, c.ReplayID, "")
	ct := t.ContentType
	if ct == kubestreamv1.ContentType_CONTENT_TYPE_UNSPECIFIED {
		ct = kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF
	}
	oc := &kubestreamv1.ObjectChange{ContentType: ct, FinalStateUnknown: c.FinalStateUnknown}
	if ct == kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF {
		oc.TypeName = c.Kind.ProtoType
	}
	var err error
	if c.Object != nil {
		if oc.Object, err = Encode(c.Object, c.Kind, ct); err != nil {
			return nil, err
		}
	}
	if c.Previous != nil {
		if oc.Previous, err = Encode(c.Previous, c.Kind, ct); err != nil {
			return nil, err
		}
	}
	if c.Op == change.Updated && c.Previous != nil && c.Object != nil {
		oc.ChangedPaths = ChangedPaths(c.Previous, c.Object)
	}
	summarize(oc, subject)
	ev.Payload = &kubestreamv1.Event_Change{Change: oc}
	return ev, nil
}

func objectRef(c *change.Change) *kubestreamv1.ObjectRef {
	o := c.Subject()
	ref := &kubestreamv1.ObjectRef{
		Group:           c.Kind.GVK.Group,
		Version:         c.Kind.GVK.Version,
		Kind:            c.Kind.GVK.Kind,
		Namespace:       o.GetNamespace(),
		Name:            o.GetName(),
		Uid:             string(o.GetUID()),
		ResourceVersion: o.GetResourceVersion(),
		Generation:      o.GetGeneration(),
		Labels:          o.GetLabels(),
	}
	for _, or := range o.GetOwnerReferences() {
		ref.OwnerReferences = append(ref.OwnerReferences, &kubestreamv1.OwnerReference{
			ApiVersion: or.APIVersion,
			Kind:       or.Kind,
			Name:       or.Name,
			Uid:        string(or.UID),
			Controller: or.Controller != nil && *or.Controller,
		})
	}
	return ref
}
