package event

import (
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// protoMarshaler is implemented by every generated Kubernetes API type.
type protoMarshaler interface {
	Marshal() ([]byte, error)
}

// Encode serializes a Kubernetes object in the given content type. Objects
// come from the informer cache and are never modified: JSON gets apiVersion
// and kind through a shallow copy.
func Encode(obj any, kind kinds.Kind, ct kubestreamv1.ContentType) ([]byte, error) {
	if obj == nil {
		return nil, nil
	}
	switch ct {
	case kubestreamv1.ContentType_CONTENT_TYPE_JSON:
		b, err := json.Marshal(withTypeMeta(obj, kind))
		if err != nil {
			return nil, fmt.Errorf("encode %s as JSON: %w", kind.GVK.Kind, err)
		}
		return b, nil
	default:
		m, ok := obj.(protoMarshaler)
		if !ok {
			return nil, fmt.Errorf("encode %T as protobuf: type has no protobuf encoding", obj)
		}
		b, err := m.Marshal()
		if err != nil {
			return nil, fmt.Errorf("encode %s as protobuf: %w", kind.GVK.Kind, err)
		}
		return b, nil
	}
}

func withTypeMeta(obj any, kind kinds.Kind) any {
	tm := metav1.TypeMeta{APIVersion: kind.GVK.GroupVersion().String(), Kind: kind.GVK.Kind}
	switch o := obj.(type) {
	case *corev1.Pod:
		c := *o
		c.TypeMeta = tm
		return &c
	case *corev1.Node:
		c := *o
		c.TypeMeta = tm
		return &c
	case *corev1.ConfigMap:
		c := *o
		c.TypeMeta = tm
		return &c
	case *appsv1.Deployment:
		c := *o
		c.TypeMeta = tm
		return &c
	}
	return obj
}
