package change

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// FromJSON builds a Compact from an object's JSON (custom resources, which
// the apiserver serves only as JSON) without decoding the object: one pass
// over the top level reads the identity from metadata and finds where
// metadata.managedFields sits, which is cut out of the bytes. raw must not
// be modified afterwards.
func (cd *Codec) FromJSON(raw []byte) (*Compact, error) {
	c := &Compact{codec: cd}
	cut, err := c.identity.readJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", cd.kind, err)
	}
	if cut.end > cut.start {
		raw = append(append(make([]byte, 0, len(raw)-(cut.end-cut.start)), raw[:cut.start]...), raw[cut.end:]...)
	}
	cd.pack(c, raw, false)
	return c, nil
}

// span is a byte range of a JSON document.
type span struct{ start, end int }

// skipValue decodes a JSON value without keeping it.
type skipValue struct{}

func (*skipValue) UnmarshalJSON([]byte) error { return nil }

// readJSON takes namespace, name, uid and resourceVersion from a JSON
// object's metadata, and returns the span to cut to drop
// metadata.managedFields with its separating comma (empty when absent).
func (m *identity) readJSON(raw []byte) (span, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := expectDelim(dec, '{'); err != nil {
		return span{}, err
	}
	var cut span
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return span{}, err
		}
		if key != "metadata" {
			if err := dec.Decode(&skipValue{}); err != nil {
				return span{}, err
			}
			continue
		}
		if err := expectDelim(dec, '{'); err != nil {
			return span{}, fmt.Errorf("metadata: %w", err)
		}
		first := true
		for dec.More() {
			before := int(dec.InputOffset())
			field, err := dec.Token()
			if err != nil {
				return span{}, err
			}
			switch field {
			case "name":
				err = dec.Decode(&m.name)
			case "namespace":
				err = dec.Decode(&m.namespace)
			case "uid":
				var uid string
				err = dec.Decode(&uid)
				m.uid = types.UID(uid)
			case "resourceVersion":
				err = dec.Decode(&m.resourceVersion)
			case "annotations":
				var a map[string]string
				err = dec.Decode(&a)
				m.initialEventsEnd = a[metav1.InitialEventsAnnotationKey] == "true"
			case "managedFields":
				if err = dec.Decode(&skipValue{}); err == nil {
					cut = span{before, int(dec.InputOffset())}
					if first {
						// No comma before it: take the one after it.
						cut.end = afterComma(raw, cut.end)
					}
				}
			default:
				err = dec.Decode(&skipValue{})
			}
			if err != nil {
				return span{}, fmt.Errorf("metadata.%s: %w", field, err)
			}
			first = false
		}
		if _, err := dec.Token(); err != nil { // the closing brace
			return span{}, err
		}
	}
	return cut, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	t, err := dec.Token()
	if err == io.EOF {
		return fmt.Errorf("empty document")
	}
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return fmt.Errorf("got %v, want %q", t, want)
	}
	return nil
}

// afterComma returns the offset past the comma that follows offset (after
// white space), or offset itself when a closing brace comes first.
func afterComma(raw []byte, offset int) int {
	for i := offset; i < len(raw); i++ {
		switch raw[i] {
		case ' ', '\t', '\n', '\r':
			continue
		case ',':
			return i + 1
		}
		return offset
	}
	return offset
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
