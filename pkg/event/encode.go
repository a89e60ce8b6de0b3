package event

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// protoMarshaler is implemented by every generated Kubernetes API type.
type protoMarshaler interface {
	Marshal() ([]byte, error)
}

// Encode serializes a Kubernetes object in the given content type. Objects
// come from the informer cache and are never modified. JSON carries
// apiVersion and kind. Objects without a protobuf encoding (custom
// resources) are always JSON: the content type used is returned.
func Encode(obj any, kind kinds.Kind, ct kubestreamv1.ContentType) ([]byte, kubestreamv1.ContentType, error) {
	if obj == nil {
		return nil, ct, nil
	}
	m, isProto := obj.(protoMarshaler)
	if ct != kubestreamv1.ContentType_CONTENT_TYPE_JSON && isProto {
		b, err := m.Marshal()
		if err != nil {
			return nil, ct, fmt.Errorf("encode %s as protobuf: %w", kind.GVK.Kind, err)
		}
		return b, kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF, nil
	}
	json := kubestreamv1.ContentType_CONTENT_TYPE_JSON
	if u, ok := obj.(*unstructured.Unstructured); ok {
		b, err := u.MarshalJSON()
		if err != nil {
			return nil, json, fmt.Errorf("encode %s as JSON: %w", kind.GVK.Kind, err)
		}
		return b, json, nil
	}
	b, err := jsonWithTypeMeta(obj, kind)
	if err != nil {
		return nil, json, fmt.Errorf("encode %s as JSON: %w", kind.GVK.Kind, err)
	}
	return b, json, nil
}

// jsonWithTypeMeta encodes a typed object with apiVersion and kind first:
// cached objects have an empty TypeMeta (omitted from their JSON), and are
// shared, so the fields are written around the object, not into it.
func jsonWithTypeMeta(obj any, kind kinds.Kind) ([]byte, error) {
	body, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	apiVersion, itemKind := kind.GVK.GroupVersion().String(), kind.GVK.Kind
	if kind.MetadataOnly {
		apiVersion, itemKind = "meta.k8s.io/v1", "PartialObjectMetadata"
	}
	if o, ok := obj.(runtime.Object); ok && !o.GetObjectKind().GroupVersionKind().Empty() || len(body) < 2 || body[0] != '{' {
		return body, nil // it has its own
	}
	head, _ := json.Marshal(struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}{itemKind, apiVersion})
	out := make([]byte, 0, len(head)+len(body))
	out = append(out, head[:len(head)-1]...)
	if len(body) > 2 {
		out = append(out, ',')
	}
	return append(out, body[1:]...), nil
}
