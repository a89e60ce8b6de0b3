package change

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// FromJSON builds a Compact from an object's JSON (custom resources, which
// the apiserver serves only as JSON). Unlike protobuf, JSON has no field
// numbers to skip by, so the object is decoded once to take its identity
// and drop managedFields, and encoded again: it stays a few hundred bytes
// of JSON in the cache instead of a tree of maps.
func (cd *Codec) FromJSON(raw []byte) (*Compact, error) {
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("decode %s: %w", cd.kind, err)
	}
	return cd.fromUnstructured(u)
}

func (cd *Codec) fromUnstructured(u *unstructured.Unstructured) (*Compact, error) {
	c := &Compact{codec: cd, identity: identity{
		namespace: u.GetNamespace(), name: u.GetName(), uid: u.GetUID(), resourceVersion: u.GetResourceVersion(),
		initialEventsEnd: u.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true",
	}}
	if len(u.GetManagedFields()) > 0 {
		unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
	}
	raw, err := u.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode %s %s/%s for the cache: %w", cd.kind, c.namespace, c.name, err)
	}
	c.Raw = raw
	return c, nil
}

// ListFromJSON builds a CompactList from a list's JSON.
func (cd *Codec) ListFromJSON(raw []byte) (*CompactList, error) {
	var l struct {
		Metadata metav1.ListMeta   `json:"metadata"`
		Items    []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, fmt.Errorf("decode %sList: %w", cd.kind, err)
	}
	list := &CompactList{ListMeta: l.Metadata, Items: make([]runtime.Object, 0, len(l.Items))}
	for _, item := range l.Items {
		c, err := cd.FromJSON(item)
		if err != nil {
			return nil, err
		}
		list.Items = append(list.Items, c)
	}
	return list, nil
}
