package change

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Compact is an object as kubestream's informer cache keeps it: the identity
// the cache and the pipeline need, and the object's Kubernetes protobuf
// encoding. A decoded Pod holds about 6 KB of Go heap; its encoding about
// 1 KB. Events carry the encoding as it is, and Full decodes the object only
// when a change needs its fields (summaries, changed paths, JSON).
//
// A Compact is immutable once built: Raw is shared, never written.
type Compact struct {
	// ObjectMeta holds only namespace, name, uid and resourceVersion.
	metav1.ObjectMeta
	// Raw is the protobuf encoding of the full object (managed fields
	// stripped), as the kind's generated Marshal writes it.
	Raw []byte
	// new returns an empty object of the kind, to decode into.
	new func() protoObject
}

// protoObject is a generated Kubernetes API type.
type protoObject interface {
	Object
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
}

// Compacted returns the compact form of obj for the kinds worth compacting
// (pods, deployments, config maps: the many objects of a cluster), and obj
// itself for others and for objects that are compact already. Nodes stay
// decoded: they are few, and image-storage accounting reads them on every
// change.
func Compacted(obj any) (any, error) {
	var newFn func() protoObject
	switch obj.(type) {
	case *corev1.Pod:
		newFn = func() protoObject { return &corev1.Pod{} }
	case *corev1.ConfigMap:
		newFn = func() protoObject { return &corev1.ConfigMap{} }
	case *appsv1.Deployment:
		newFn = func() protoObject { return &appsv1.Deployment{} }
	default:
		return obj, nil
	}
	o := obj.(protoObject)
	raw, err := o.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode %T %s/%s for the cache: %w", obj, o.GetNamespace(), o.GetName(), err)
	}
	return &Compact{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       o.GetNamespace(),
			Name:            o.GetName(),
			UID:             o.GetUID(),
			ResourceVersion: o.GetResourceVersion(),
		},
		Raw: raw,
		new: newFn,
	}, nil
}

// Full returns the decoded object behind o: o itself unless it is Compact.
func Full(o Object) (Object, error) {
	c, ok := o.(*Compact)
	if !ok {
		return o, nil
	}
	full := c.new()
	if err := full.Unmarshal(c.Raw); err != nil {
		return nil, fmt.Errorf("decode cached %s/%s: %w", c.Namespace, c.Name, err)
	}
	return full, nil
}

// GetObjectKind implements runtime.Object; kinds are carried by changes.
func (c *Compact) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object. Raw is immutable and shared.
func (c *Compact) DeepCopyObject() runtime.Object {
	out := *c
	c.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return &out
}
