package change_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/kubestream/kubestream/pkg/change"
)

// TestFromJSONCutsManagedFieldsWherever: the managed fields go wherever they
// sit in metadata, the rest of the object stays byte for byte as the
// apiserver sent it, and the identity is read.
func TestFromJSONCutsManagedFieldsWherever(t *testing.T) {
	mf := `"managedFields":[{"manager":"kubectl","operation":"Apply","fieldsV1":{"f:spec":{}}}]`
	spec := `"spec":{"size":12345678901234567,"note":"a \"quoted\" , } value"}`
	tests := map[string]struct{ in, want string }{
		"first": {`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{` + mf + `,"name":"w","namespace":"ns","uid":"u","resourceVersion":"7"},` + spec + `}`,
			`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"ns","uid":"u","resourceVersion":"7"},` + spec + `}`},
		"middle": {`{"metadata":{"name":"w","namespace":"ns",` + mf + `,"uid":"u","resourceVersion":"7"},` + spec + `}`,
			`{"metadata":{"name":"w","namespace":"ns","uid":"u","resourceVersion":"7"},` + spec + `}`},
		"last": {`{` + spec + `,"metadata":{"name":"w","namespace":"ns","uid":"u","resourceVersion":"7",` + mf + `}}`,
			`{` + spec + `,"metadata":{"name":"w","namespace":"ns","uid":"u","resourceVersion":"7"}}`},
		"none": {`{"metadata":{"name":"w","namespace":"ns","uid":"u","resourceVersion":"7"},` + spec + `}`,
			`{"metadata":{"name":"w","namespace":"ns","uid":"u","resourceVersion":"7"},` + spec + `}`},
		"pretty": {"{\n  \"metadata\": {\n    " + mf + ",\n    \"name\": \"w\", \"namespace\": \"ns\", \"uid\": \"u\", \"resourceVersion\": \"7\"\n  },\n  " + spec + "\n}",
			`{"metadata":{"name":"w","namespace":"ns","uid":"u","resourceVersion":"7"},` + spec + `}`},
	}
	cd := change.JSONCodec("Widget")
	for name, tt := range tests {
		c, err := cd.FromJSON([]byte(tt.in))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if c.GetName() != "w" || c.GetNamespace() != "ns" || string(c.GetUID()) != "u" || c.GetResourceVersion() != "7" {
			t.Errorf("%s: identity %s/%s %s@%s", name, c.GetNamespace(), c.GetName(), c.GetUID(), c.GetResourceVersion())
		}
		if strings.Contains(string(c.Bytes()), "managedFields") || !json.Valid(c.Bytes()) {
			t.Errorf("%s: cached %s", name, c.Bytes())
			continue
		}
		var got, want any
		_ = json.Unmarshal(c.Bytes(), &got)
		_ = json.Unmarshal([]byte(tt.want), &want)
		if !reflect.DeepEqual(got, want) || !strings.Contains(string(c.Bytes()), "12345678901234567") {
			t.Errorf("%s: cached %s, want %s", name, c.Bytes(), tt.want)
		}
	}
	only, err := cd.FromJSON([]byte(`{"metadata":{` + mf + `}}`))
	if err != nil || string(only.Bytes()) != `{"metadata":{}}` {
		t.Errorf("managed fields alone: %s, %v", only.Bytes(), err)
	}
	for _, bad := range []string{``, `[]`, `{"metadata":[1]}`, `{"metadata":{"name":3}}`, `{"metadata":{"name":"w"`} {
		if _, err := cd.FromJSON([]byte(bad)); err == nil {
			t.Errorf("FromJSON(%q) accepted", bad)
		}
	}
}
