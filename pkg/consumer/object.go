package consumer

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// ErrNoState is returned when an event carries no object state to decode:
// the state was dropped to fit the broker (Event.change.truncated), or a
// delete was published as its identity alone.
var ErrNoState = errors.New("the event carries no object state (truncated to fit the broker)")

// partialObjectMetadata is the type_name of metadata-only states.
const partialObjectMetadata = "k8s.io.apimachinery.pkg.apis.meta.v1.PartialObjectMetadata"

// Object is one Kubernetes object as the stream last described it. Objects
// are never changed once a Store handed them out: an update makes a new
// Object, so handlers may keep old ones.
type Object struct {
	Cluster string
	// Resource is the lower-case plural resource name ("pods").
	Resource        string
	Group           string
	Version         string
	Kind            string
	Namespace       string
	Name            string
	UID             string
	ResourceVersion string
	Labels          map[string]string
	// FinalStateUnknown is set on objects given to OnDelete when the
	// object's removal was inferred: a DELETED flagged final_state_unknown,
	// or a replay round that no longer mentioned it. The state is then the
	// last one the stream carried.
	FinalStateUnknown bool
	// Event is the event this state came from.
	Event *kubestreamv1.Event

	state       []byte
	contentType kubestreamv1.ContentType
	typeName    string

	once    sync.Once
	decoded runtime.Object
	err     error
}

// newObject makes the Object an object event describes. fromPrevious takes
// the state from change.previous (the final state of a delete).
func newObject(ev *kubestreamv1.Event, fromPrevious bool) *Object {
	ref := ev.GetObject()
	ch := ev.GetChange()
	state := ch.GetObject()
	if fromPrevious {
		state = ch.GetPrevious()
	}
	return &Object{
		Cluster: ev.GetCluster(), Resource: ref.GetResource(), Group: ref.GetGroup(), Version: ref.GetVersion(), Kind: ref.GetKind(),
		Namespace: ref.GetNamespace(), Name: ref.GetName(), UID: ref.GetUid(), ResourceVersion: ref.GetResourceVersion(),
		Labels: ref.GetLabels(), Event: ev, state: state, contentType: ch.GetContentType(), typeName: ch.GetTypeName(),
		FinalStateUnknown: fromPrevious && ch.GetFinalStateUnknown(),
	}
}

// withStateOf returns o, or a copy of o with other's state when o has none
// (a delete published as its identity keeps the last state seen).
func (o *Object) withStateOf(other *Object) *Object {
	if len(o.state) > 0 || other == nil {
		return o
	}
	c := o.copyMeta()
	c.state, c.contentType, c.typeName = other.state, other.contentType, other.typeName
	return c
}

// inferredGone returns a copy of o flagged FinalStateUnknown.
func (o *Object) inferredGone() *Object {
	c := o.copyMeta()
	c.state, c.contentType, c.typeName = o.state, o.contentType, o.typeName
	c.FinalStateUnknown = true
	return c
}

func (o *Object) copyMeta() *Object {
	return &Object{Cluster: o.Cluster, Resource: o.Resource, Group: o.Group, Version: o.Version, Kind: o.Kind,
		Namespace: o.Namespace, Name: o.Name, UID: o.UID, ResourceVersion: o.ResourceVersion, Labels: o.Labels,
		FinalStateUnknown: o.FinalStateUnknown, Event: o.Event}
}

// Key is resource/namespace/name, the form of ReplayMarker.pending_keys
// (namespace empty for cluster-scoped kinds: "nodes//node-a").
func (o *Object) Key() string { return o.Resource + "/" + o.Namespace + "/" + o.Name }

// GroupVersionKind is the object's apiVersion and kind.
func (o *Object) GroupVersionKind() schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: o.Group, Version: o.Version, Kind: o.Kind}
}

// State returns the object's encoded state and how it is encoded: the
// Kubernetes protobuf message typeName (without the apiserver's "k8s\x00"
// envelope), or JSON. Empty when the event carried none (see ErrNoState).
func (o *Object) State() (data []byte, contentType kubestreamv1.ContentType, typeName string) {
	return o.state, o.contentType, o.typeName
}

// Decode returns the object as a typed value of client-go's scheme
// (*corev1.Pod, *appsv1.Deployment, ...) when the scheme knows its kind,
// as *unstructured.Unstructured for JSON of other kinds (custom
// resources), and as *metav1.PartialObjectMetadata for metadata-only
// states. Decoded once and
// shared: do not modify the result, copy it (DeepCopyObject) first.
func (o *Object) Decode() (runtime.Object, error) {
	o.once.Do(func() { o.decoded, o.err = o.decode() })
	return o.decoded, o.err
}

func (o *Object) decode() (runtime.Object, error) {
	if len(o.state) == 0 {
		return nil, fmt.Errorf("decode %s %s: %w", o.Kind, o.Key(), ErrNoState)
	}
	gvk := o.GroupVersionKind()
	switch o.contentType {
	case kubestreamv1.ContentType_CONTENT_TYPE_JSON:
		typed, err := scheme.Scheme.New(gvk)
		if err != nil {
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(o.state); err != nil {
				return nil, fmt.Errorf("decode %s %s from JSON: %w", o.Kind, o.Key(), err)
			}
			return u, nil
		}
		if err := json.Unmarshal(o.state, typed); err != nil {
			return nil, fmt.Errorf("decode %s %s from JSON: %w", o.Kind, o.Key(), err)
		}
		typed.GetObjectKind().SetGroupVersionKind(gvk)
		return typed, nil
	case kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF, kubestreamv1.ContentType_CONTENT_TYPE_UNSPECIFIED:
		if o.typeName == partialObjectMetadata {
			// A metadata-only kind: identity, labels and annotations, no spec.
			meta := &metav1.PartialObjectMetadata{}
			if err := meta.Unmarshal(o.state); err != nil {
				return nil, fmt.Errorf("decode %s %s from protobuf %s: %w", o.Kind, o.Key(), o.typeName, err)
			}
			meta.SetGroupVersionKind(gvk)
			return meta, nil
		}
		typed, err := scheme.Scheme.New(gvk)
		if err != nil {
			return nil, fmt.Errorf("decode %s %s: Kubernetes protobuf %s of a kind client-go's scheme does not know: run kubestream with --content-type json for it", o.Kind, o.Key(), o.typeName)
		}
		u, ok := typed.(interface{ Unmarshal([]byte) error })
		if !ok {
			return nil, fmt.Errorf("decode %s %s: %T has no protobuf decoding", o.Kind, o.Key(), typed)
		}
		if err := u.Unmarshal(o.state); err != nil {
			return nil, fmt.Errorf("decode %s %s from protobuf %s: %w", o.Kind, o.Key(), o.typeName, err)
		}
		typed.GetObjectKind().SetGroupVersionKind(gvk)
		return typed, nil
	default:
		return nil, fmt.Errorf("decode %s %s: unknown content type %s", o.Kind, o.Key(), o.contentType)
	}
}

// Unstructured returns the object as unstructured data, whatever its
// encoding: the generic access for any kind.
func (o *Object) Unstructured() (*unstructured.Unstructured, error) {
	obj, err := o.Decode()
	if err != nil {
		return nil, err
	}
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return u.DeepCopy(), nil
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("convert %s %s to unstructured: %w", o.Kind, o.Key(), err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(o.GroupVersionKind())
	return u, nil
}

// Pod returns the object as a Pod; an error when it is another kind or
// carries no state.
func (o *Object) Pod() (*corev1.Pod, error) { return as[*corev1.Pod](o) }

// Node returns the object as a Node.
func (o *Object) Node() (*corev1.Node, error) { return as[*corev1.Node](o) }

// Deployment returns the object as a Deployment.
func (o *Object) Deployment() (*appsv1.Deployment, error) { return as[*appsv1.Deployment](o) }

// ConfigMap returns the object as a ConfigMap.
func (o *Object) ConfigMap() (*corev1.ConfigMap, error) { return as[*corev1.ConfigMap](o) }

func as[T runtime.Object](o *Object) (T, error) {
	var zero T
	obj, err := o.Decode()
	if err != nil {
		return zero, err
	}
	t, ok := obj.(T)
	if !ok {
		return zero, fmt.Errorf("%s %s is a %s, not a %T", o.Kind, o.Key(), o.GroupVersionKind(), zero)
	}
	return t, nil
}
