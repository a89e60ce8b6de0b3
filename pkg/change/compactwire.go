package change

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the Kubernetes protobuf messages read here. Every
// top-level API type has its ObjectMeta (or ListMeta) at field 1, and a
// list's items at field 2.
const (
	fieldMetadata        = 1
	fieldItems           = 2
	metaName             = 1
	metaNamespace        = 3
	metaUID              = 5
	metaResourceVersion  = 6
	metaAnnotations      = 12
	metaManagedFields    = 17
	listResourceVersion  = 2
	listContinue         = 3
	listRemainingItemCnt = 4
)

// FromProto builds a Compact from an object's protobuf encoding (the
// apiserver's bytes, inside its "k8s\x00" envelope) without decoding the
// object: it reads the identity from the metadata and drops managedFields
// from the bytes. raw must not be modified afterwards.
func (cd *Codec) FromProto(raw []byte) (*Compact, error) { return cd.fromProto(raw, false) }

// fromProto is FromProto; a borrowed raw is copied if kept as it is.
func (cd *Codec) fromProto(raw []byte, borrowed bool) (*Compact, error) {
	kind := cd.kind
	c := &Compact{codec: cd}
	var (
		meta    []byte
		metaAt  = -1
		metaEnd int
	)
	for b, at := raw, 0; len(b) > 0; {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			return nil, fmt.Errorf("decode %s: %w", kind, protowire.ParseError(n))
		}
		if num == fieldMetadata && typ == protowire.BytesType {
			_, _, tagLen := protowire.ConsumeTag(b)
			meta, _ = protowire.ConsumeBytes(b[tagLen:])
			metaAt, metaEnd = at, at+n
		}
		b, at = b[n:], at+n
	}
	if metaAt < 0 {
		return nil, fmt.Errorf("decode %s: no metadata", kind)
	}
	if err := c.identity.read(meta); err != nil {
		return nil, fmt.Errorf("decode %s metadata: %w", kind, err)
	}
	stripped, changed, err := withoutField(meta, metaManagedFields)
	if err != nil {
		return nil, fmt.Errorf("decode %s metadata: %w", kind, err)
	}
	if !changed {
		cd.pack(c, raw, borrowed)
		return c, nil
	}
	out := make([]byte, 0, len(raw)-len(meta)+len(stripped))
	out = append(out, raw[:metaAt]...)
	out = protowire.AppendTag(out, fieldMetadata, protowire.BytesType)
	out = protowire.AppendBytes(out, stripped)
	out = append(out, raw[metaEnd:]...)
	cd.pack(c, out, false)
	return c, nil
}

// read takes namespace, name, uid and resourceVersion from ObjectMeta bytes.
func (m *identity) read(meta []byte) error {
	for b := meta; len(b) > 0; {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if typ == protowire.BytesType {
			_, _, tagLen := protowire.ConsumeTag(b)
			v, _ := protowire.ConsumeBytes(b[tagLen:])
			switch num {
			case metaName:
				m.name = string(v)
			case metaNamespace:
				m.namespace = string(v)
			case metaUID:
				m.uid = types.UID(v)
			case metaResourceVersion:
				m.resourceVersion = string(v)
			case metaAnnotations:
				// Only the watch-list bookmark's annotation matters here:
				// the reflector waits for it to end the initial list.
				if k, val := mapEntry(v); k == metav1.InitialEventsAnnotationKey && val == "true" {
					m.initialEventsEnd = true
				}
			}
		}
		b = b[n:]
	}
	return nil
}

// mapEntry reads a protobuf map<string,string> entry.
func mapEntry(b []byte) (key, value string) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			return "", ""
		}
		if typ == protowire.BytesType {
			_, _, tagLen := protowire.ConsumeTag(b)
			v, _ := protowire.ConsumeBytes(b[tagLen:])
			switch num {
			case 1:
				key = string(v)
			case 2:
				value = string(v)
			}
		}
		b = b[n:]
	}
	return key, value
}

// withoutField returns msg without any occurrence of field num.
func withoutField(msg []byte, num protowire.Number) ([]byte, bool, error) {
	var out []byte
	changed := false
	for b := msg; len(b) > 0; {
		n0, _, n := protowire.ConsumeField(b)
		if n < 0 {
			return nil, false, protowire.ParseError(n)
		}
		if n0 == num {
			if !changed {
				out = append(make([]byte, 0, len(msg)), msg[:len(msg)-len(b)]...)
				changed = true
			}
		} else if changed {
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	if !changed {
		return msg, false, nil
	}
	return out, true, nil
}

// CompactList is a list of compact objects, as the compact list/watch
// returns it to the informer's reflector.
type CompactList struct {
	metav1.ListMeta
	Items []runtime.Object
}

// GetObjectKind implements runtime.Object.
func (l *CompactList) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object; items are immutable and shared.
func (l *CompactList) DeepCopyObject() runtime.Object {
	out := &CompactList{Items: append([]runtime.Object(nil), l.Items...)}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	return out
}

// ListFromProto builds a CompactList from a list's protobuf encoding
// (PodList and the like). Each item's bytes are copied (or compressed), so
// items do not pin the whole response in memory.
func (cd *Codec) ListFromProto(raw []byte) (*CompactList, error) {
	itemKind := cd.kind
	list := &CompactList{}
	for b := raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			return nil, fmt.Errorf("decode %sList: %w", itemKind, protowire.ParseError(n))
		}
		if typ == protowire.BytesType {
			_, _, tagLen := protowire.ConsumeTag(b)
			v, _ := protowire.ConsumeBytes(b[tagLen:])
			switch num {
			case fieldMetadata:
				if err := readListMeta(&list.ListMeta, v); err != nil {
					return nil, fmt.Errorf("decode %sList metadata: %w", itemKind, err)
				}
			case fieldItems:
				item, err := cd.fromProto(v, true)
				if err != nil {
					return nil, err
				}
				list.Items = append(list.Items, item)
			}
		}
		b = b[n:]
	}
	return list, nil
}

func readListMeta(lm *metav1.ListMeta, b []byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		_, _, tagLen := protowire.ConsumeTag(b)
		switch {
		case num == listResourceVersion && typ == protowire.BytesType:
			v, _ := protowire.ConsumeBytes(b[tagLen:])
			lm.ResourceVersion = string(v)
		case num == listContinue && typ == protowire.BytesType:
			v, _ := protowire.ConsumeBytes(b[tagLen:])
			lm.Continue = string(v)
		case num == listRemainingItemCnt && typ == protowire.VarintType:
			v, _ := protowire.ConsumeVarint(b[tagLen:])
			count := int64(v)
			lm.RemainingItemCount = &count
		}
		b = b[n:]
	}
	return nil
}
