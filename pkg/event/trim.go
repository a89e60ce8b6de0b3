package event

import (
	"google.golang.org/protobuf/proto"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// Trim returns an event that encodes to at most maxBytes, or nil when even
// the identity and summary do not fit. It drops, in order, the previous
// state, the changed paths and the new state, and sets truncated. ev itself
// is not modified.
func Trim(ev *kubestreamv1.Event, maxBytes int) *kubestreamv1.Event {
	if proto.Size(ev) <= maxBytes {
		return ev
	}
	oc := ev.GetChange()
	if oc == nil {
		return nil
	}
	out := proto.CloneOf(ev)
	toc := out.GetChange()
	toc.Truncated = true
	steps := []func(){
		func() { toc.Previous = nil },
		func() { toc.ChangedPaths = nil },
		func() { toc.Object = nil },
	}
	for _, step := range steps {
		step()
		if proto.Size(out) <= maxBytes {
			return out
		}
	}
	return nil
}

// IdentityOnly returns a copy of an object event reduced to what a consumer
// needs to apply it: the object's kind, namespace, name, uid and
// resourceVersion, the operation and the flags, with change.truncated set.
// It is the last resort for a delete the sink refused in full.
func IdentityOnly(ev *kubestreamv1.Event) *kubestreamv1.Event {
	out := &kubestreamv1.Event{
		Id:            ev.GetId(),
		SchemaVersion: ev.GetSchemaVersion(),
		Operation:     ev.GetOperation(),
		Cluster:       ev.GetCluster(),
		Instance:      ev.GetInstance(),
		ObservedAt:    ev.GetObservedAt(),
		ReplayId:      ev.GetReplayId(),
	}
	if o := ev.GetObject(); o != nil {
		out.Object = &kubestreamv1.ObjectRef{
			Group: o.GetGroup(), Version: o.GetVersion(), Kind: o.GetKind(), Resource: o.GetResource(),
			Namespace: o.GetNamespace(), Name: o.GetName(), Uid: o.GetUid(), ResourceVersion: o.GetResourceVersion(),
		}
	}
	if oc := ev.GetChange(); oc != nil {
		out.Payload = &kubestreamv1.Event_Change{Change: &kubestreamv1.ObjectChange{
			ContentType:       oc.GetContentType(),
			TypeName:          oc.GetTypeName(),
			FinalStateUnknown: oc.GetFinalStateUnknown(),
			Truncated:         true,
		}}
	}
	return out
}
