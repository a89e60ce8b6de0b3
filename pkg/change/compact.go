package change

import (
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Compact is an object as kubestream's informer cache keeps it: the identity
// the cache and the pipeline need, and the object's encoding as the
// apiserver sent it (Kubernetes protobuf, or JSON for kinds served only as
// JSON), managed fields stripped, compressed with the kind's dictionary
// when the codec compresses (pack.go). A decoded Pod holds about 6 KB of Go
// heap; its encoding about 1 KB, compressed about 100 bytes. Events carry
// the encoding as it is, and Full decodes the object only when a change
// needs its fields (summaries, changed paths, JSON).
//
// A Compact is immutable once built: its bytes are shared, never written.
type Compact struct {
	// identity is all the cache and the pipeline read of an object.
	identity
	// enc is the encoding of the full object, compressed once the object
	// is cold (read it with Bytes).
	enc atomic.Pointer[encoding]
	// retired: the cache no longer holds this state (Retire).
	retired atomic.Bool
	// codec decodes the encoding; one per kind.
	codec *Codec
}

// JSON reports whether Raw is JSON (else Kubernetes protobuf).
func (c *Compact) JSON() bool { return c.codec.json }

// ProtoType is the Go type Raw decodes into (a pointer to a generated API
// struct, or to PartialObjectMetadata); nil when Raw is JSON.
func (c *Compact) ProtoType() reflect.Type { return c.codec.typ }

// protoObject is a generated Kubernetes API type.
type protoObject interface {
	Object
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
}

// Codec turns one kind's encoded objects into Compacts and back into
// decoded objects.
type Codec struct {
	kind string
	// newObject returns an empty object to decode protobuf into.
	newObject func() runtime.Object
	// typ is newObject's type, for readers of the encoding that walk it
	// by the Go type's protobuf tags instead of decoding it.
	typ  reflect.Type
	json bool
	// packer, when set, compresses what the codec keeps (WithCompression).
	packer *packer
}

// ProtoCodec is the codec of a kind received as Kubernetes protobuf; newObject
// returns an empty object of the kind (a generated type, or
// PartialObjectMetadata).
func ProtoCodec(kind string, newObject func() runtime.Object) *Codec {
	return &Codec{kind: kind, newObject: newObject, typ: reflect.TypeOf(newObject())}
}

// JSONCodec is the codec of a kind the apiserver serves as JSON only (custom
// resources); objects decode to Unstructured.
func JSONCodec(kind string) *Codec { return &Codec{kind: kind, json: true} }

var protoCodecs sync.Map // reflect.Type -> *Codec

// Compacted returns the compact form of a decoded Kubernetes object with a
// protobuf encoding (as the cache would keep it), and obj itself for
// objects that are compact already or have no protobuf encoding.
func Compacted(obj any) (any, error) {
	o, ok := obj.(protoObject)
	if !ok {
		return obj, nil
	}
	t := reflect.TypeOf(obj)
	cd, _ := protoCodecs.LoadOrStore(t, ProtoCodec(t.Elem().Name(), func() runtime.Object {
		return reflect.New(t.Elem()).Interface().(runtime.Object)
	}))
	raw, err := o.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode %T %s/%s for the cache: %w", obj, o.GetNamespace(), o.GetName(), err)
	}
	c := &Compact{
		identity: identity{namespace: o.GetNamespace(), name: o.GetName(), uid: o.GetUID(), resourceVersion: o.GetResourceVersion()},
		codec:    cd.(*Codec),
	}
	c.enc.Store(&encoding{b: raw})
	return c, nil
}

// Full returns the decoded object behind o: o itself unless it is Compact.
func Full(o Object) (Object, error) {
	c, ok := o.(*Compact)
	if !ok {
		return o, nil
	}
	raw := c.Bytes()
	if c.codec.json {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("decode cached %s %s/%s: %w", c.codec.kind, c.namespace, c.name, err)
		}
		return u, nil
	}
	full, ok := c.codec.newObject().(protoObject)
	if !ok {
		return nil, fmt.Errorf("decode cached %s %s/%s: the kind has no protobuf encoding", c.codec.kind, c.namespace, c.name)
	}
	if err := full.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("decode cached %s %s/%s: %w", c.codec.kind, c.namespace, c.name, err)
	}
	return full, nil
}

// GetObjectKind implements runtime.Object; kinds are carried by changes.
func (c *Compact) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object. A Compact is immutable: the
// copy shares its bytes.
func (c *Compact) DeepCopyObject() runtime.Object {
	out := &Compact{identity: c.identity, codec: c.codec}
	out.enc.Store(c.enc.Load())
	return out
}

// identity implements metav1.Object with the four fields kubestream's cache
// and pipeline use, in about 70 bytes where metav1.ObjectMeta takes 400.
// The other getters return zero values; setters do nothing, because cached
// objects are never modified.
type identity struct {
	namespace, name, resourceVersion string
	uid                              types.UID
	// initialEventsEnd marks the bookmark that ends a watch's initial
	// events (metav1.InitialEventsAnnotationKey).
	initialEventsEnd bool
}

var _ metav1.Object = &identity{}

func (m *identity) GetNamespace() string                  { return m.namespace }
func (m *identity) GetName() string                       { return m.name }
func (m *identity) GetUID() types.UID                     { return m.uid }
func (m *identity) GetResourceVersion() string            { return m.resourceVersion }
func (m *identity) SetNamespace(string)                   {}
func (m *identity) SetName(string)                        {}
func (m *identity) GetGenerateName() string               { return "" }
func (m *identity) SetGenerateName(string)                {}
func (m *identity) SetUID(types.UID)                      {}
func (m *identity) SetResourceVersion(string)             {}
func (m *identity) GetGeneration() int64                  { return 0 }
func (m *identity) SetGeneration(int64)                   {}
func (m *identity) GetSelfLink() string                   { return "" }
func (m *identity) SetSelfLink(string)                    {}
func (m *identity) GetCreationTimestamp() metav1.Time     { return metav1.Time{} }
func (m *identity) SetCreationTimestamp(metav1.Time)      {}
func (m *identity) GetDeletionTimestamp() *metav1.Time    { return nil }
func (m *identity) SetDeletionTimestamp(*metav1.Time)     {}
func (m *identity) GetDeletionGracePeriodSeconds() *int64 { return nil }
func (m *identity) SetDeletionGracePeriodSeconds(*int64)  {}
func (m *identity) GetLabels() map[string]string          { return nil }
func (m *identity) SetLabels(map[string]string)           {}
func (m *identity) GetAnnotations() map[string]string {
	if m.initialEventsEnd {
		return map[string]string{metav1.InitialEventsAnnotationKey: "true"}
	}
	return nil
}
func (m *identity) SetAnnotations(map[string]string)                           {}
func (m *identity) GetFinalizers() []string                                    { return nil }
func (m *identity) SetFinalizers([]string)                                     {}
func (m *identity) GetOwnerReferences() []metav1.OwnerReference                { return nil }
func (m *identity) SetOwnerReferences([]metav1.OwnerReference)                 {}
func (m *identity) GetManagedFields() []metav1.ManagedFieldsEntry              { return nil }
func (m *identity) SetManagedFields(managedFields []metav1.ManagedFieldsEntry) {}

// Remembered is an object known only by its identity: the saved position of
// an object kubestream no longer sees (a resume found it gone, or replaced
// under its name). Events about it carry no object state.
type Remembered struct{ identity }

// NewRemembered returns the identity of an object that is no longer seen.
func NewRemembered(namespace, name, uid, resourceVersion string) *Remembered {
	return &Remembered{identity{namespace: namespace, name: name, uid: types.UID(uid), resourceVersion: resourceVersion}}
}

// GetObjectKind implements runtime.Object; kinds are carried by changes.
func (r *Remembered) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object. A Remembered is immutable.
func (r *Remembered) DeepCopyObject() runtime.Object {
	out := *r
	return &out
}
