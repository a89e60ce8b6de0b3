// Package event translates changes into wire events. Translation is pure: the
// same change always gives the same event, apart from nothing.
package event

import (
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/redact"
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
	// ConfigMapData says how config map values appear (--configmap-data).
	ConfigMapData redact.Policy
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

			PendingKeys:          c.Replay.PendingKeys,
			PendingKeysTruncated: c.Replay.PendingKeysTruncated,
		}}
		return ev, nil
	}
	if c.Op == change.Heartbeat {
		return t.heartbeat(ev, c)
	}
	subject := c.Subject()
	if subject == nil {
		return nil, fmt.Errorf("%s change of %s without an object", c.Op, c.Kind.Resource)
	}
	if c.ImageStorage != nil {
		ev.Object = objectRef(c.Kind, subject)
		ev.Id = ID(string(subject.GetUID()), subject.GetResourceVersion(), c.Op, c.ReplayID, "imagestorage")
		ev.Payload = &kubestreamv1.Event_ImageStorage{ImageStorage: c.ImageStorage}
		return ev, nil
	}
	ev.Id = ID(string(subject.GetUID()), subject.GetResourceVersion(), c.Op, c.ReplayID, "")
	ct := t.ContentType
	if ct == kubestreamv1.ContentType_CONTENT_TYPE_UNSPECIFIED {
		ct = kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF
	}
	oc := &kubestreamv1.ObjectChange{ContentType: ct, FinalStateUnknown: c.FinalStateUnknown, PreviousUnknown: c.PreviousUnknown}
	// Cached objects may be compact (identity and encoded bytes): decode
	// what this event needs, once. An update between protobuf states takes
	// its changed paths from the encodings and leaves the previous state
	// encoded: its bytes are sent as they are.
	var (
		prev  change.Object
		paths []string
		wired bool
	)
	if c.Op == change.Updated && c.Object != nil && ct == kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF {
		paths, wired = t.wirePaths(c.Previous, c.Object)
	}
	// Without a diff by reflection, a state sent as received is decoded
	// only as far as the summary and the object reference read.
	partial := c.Op != change.Updated || wired
	obj, err := t.decodeState(c.Object, c.Kind, ct, partial)
	if err != nil {
		return nil, err
	}
	if !wired {
		if prev, err = t.decodeState(c.Previous, c.Kind, ct, partial); err != nil {
			return nil, err
		}
	}
	// Config map values per --configmap-data (redact.go): states and changed
	// paths see the treated objects, the summary the real ones. Kinds
	// served only as JSON (custom resources) are sent as JSON: the content
	// type is per event.
	realObj, realPrev := obj, prev
	cachedObj, obj := t.redacted(c.Object, obj)
	cachedPrev, prev := t.redacted(c.Previous, prev)
	var objCT, prevCT kubestreamv1.ContentType
	if oc.Object, objCT, err = encodeState(cachedObj, obj, c.Kind, ct); err != nil {
		return nil, err
	}
	if oc.Previous, prevCT, err = encodeState(cachedPrev, prev, c.Kind, ct); err != nil {
		return nil, err
	}
	switch {
	case oc.Object != nil:
		oc.ContentType = objCT
	case oc.Previous != nil:
		oc.ContentType = prevCT
	case !c.Kind.Protobuf():
		// Known by identity only: say how the kind's states would be.
		oc.ContentType = kubestreamv1.ContentType_CONTENT_TYPE_JSON
	}
	if oc.ContentType == kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF {
		oc.TypeName = c.Kind.StateProtoType()
	}
	switch {
	case wired:
		oc.ChangedPaths = paths
	case c.Op == change.Updated && prev != nil && obj != nil:
		oc.ChangedPaths = ChangedPaths(prev, obj)
	}
	full := realObj
	if full == nil {
		full = realPrev
	}
	ev.Object = objectRef(c.Kind, full)
	if !isRemembered(full) {
		summarize(oc, c.Kind, full)
	}
	t.notePolicy(oc)
	ev.Payload = &kubestreamv1.Event_Change{Change: oc}
	return ev, nil
}

// decodeState decodes a state for its event; nil stays nil. With partial,
// a kind's protobuf state sent in protobuf is decoded with the kind's
// DecodeForSummary when it has one: its bytes go out as they are, so only
// the summary and the object reference read the decoded object.
func (t *Translator) decodeState(o change.Object, kind kinds.Kind, ct kubestreamv1.ContentType, partial bool) (change.Object, error) {
	if c, ok := o.(*change.Compact); ok && partial && !c.JSON() && ct == kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF {
		// Config map values are treated on decoded states: their kind
		// always decodes in full.
		if typed, ok := kind.Typed(); ok && typed.DecodeForSummary != nil && c.ProtoType() != configMapType {
			d, err := typed.DecodeForSummary(c.Bytes())
			if err != nil {
				return nil, fmt.Errorf("decode cached %s %s/%s: %w", kind.Resource, c.GetNamespace(), c.GetName(), err)
			}
			if full, ok := d.(change.Object); ok {
				return full, nil
			}
		}
	}
	return fullState(o)
}

// fullState decodes a state; nil stays nil.
func fullState(o change.Object) (change.Object, error) {
	if o == nil {
		return nil, nil
	}
	return change.Full(o)
}

// wirePaths computes an update's changed paths on the encodings of two
// protobuf Compacts; false when they are not, or when config map values are
// treated (paths are of the treated states, which need decoding).
func (t *Translator) wirePaths(prev, next change.Object) ([]string, bool) {
	pc, ok := prev.(*change.Compact)
	if !ok || pc.JSON() {
		return nil, false
	}
	nc, ok := next.(*change.Compact)
	if !ok || nc.JSON() {
		return nil, false
	}
	if t.ConfigMapData != redact.Full && pc.ProtoType() == configMapType {
		return nil, false
	}
	return ChangedPathsWire(pc, nc)
}

// encodeState encodes one state and says in which content type; a compact
// object's encoding is used as it is when it is in the wanted one, and
// custom resources (JSON only) are always JSON.
func encodeState(cached, full change.Object, kind kinds.Kind, ct kubestreamv1.ContentType) ([]byte, kubestreamv1.ContentType, error) {
	if cached == nil || isRemembered(cached) {
		return nil, ct, nil // known by identity only: no state to send
	}
	if compact, ok := cached.(*change.Compact); ok {
		switch {
		case compact.JSON():
			return compact.Bytes(), kubestreamv1.ContentType_CONTENT_TYPE_JSON, nil
		case ct == kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF:
			return compact.Bytes(), ct, nil
		}
	}
	return Encode(full, kind, ct)
}

func isRemembered(o change.Object) bool {
	_, ok := o.(*change.Remembered)
	return ok
}

func objectRef(kind kinds.Kind, o change.Object) *kubestreamv1.ObjectRef {
	ref := &kubestreamv1.ObjectRef{
		Group:           kind.GVK.Group,
		Version:         kind.GVK.Version,
		Kind:            kind.GVK.Kind,
		Resource:        kind.Resource,
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
