package event

import (
	"reflect"
	"sort"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
)

// decodedFields lists the fields reachable from m that the wire walk leaves
// to decoding and reflection.
func decodedFields(m *wireMsg, seen map[*wireMsg]bool, out map[string]bool) {
	if seen[m] {
		return
	}
	seen[m] = true
	for _, f := range m.fields {
		if f.shape == shapeDecode {
			out[m.t.String()+f.seg] = true
		}
		if f.shape != shapeNone && f.shape != shapeDecode && f.val.msg != nil {
			decodedFields(f.val.msg, seen, out)
		}
	}
}

// The typed kinds are walked on the wire throughout: no field of theirs is
// left to decoding.
func TestWireSchemaOfTypedKindsDecodesNothing(t *testing.T) {
	for _, obj := range []any{&corev1.Pod{}, &appsv1.Deployment{}, &corev1.ConfigMap{}, &corev1.Node{}, &metav1.PartialObjectMetadata{}} {
		m := wireSchema(reflect.TypeOf(obj))
		if m == nil {
			t.Fatalf("%T: no wire schema", obj)
		}
		out := map[string]bool{}
		decodedFields(m, map[*wireMsg]bool{}, out)
		if len(out) > 0 {
			t.Errorf("%T: fields left to decoding: %v", obj, out)
		}
	}
}

// TestWireSchemaOfSchemeKinds reports, with -v, which kinds of client-go's
// scheme the wire differ leaves to ChangedPaths and which fields it decodes.
func TestWireSchemaOfSchemeKinds(t *testing.T) {
	var declined []string
	out := map[string]bool{}
	for gvk, typ := range scheme.Scheme.AllKnownTypes() {
		m := wireSchema(reflect.PointerTo(typ))
		if m == nil {
			declined = append(declined, gvk.String())
			continue
		}
		decodedFields(m, map[*wireMsg]bool{}, out)
	}
	var fields []string
	for f := range out {
		fields = append(fields, f)
	}
	sort.Strings(declined)
	sort.Strings(fields)
	t.Logf("declined (floats or no protobuf decoding): %d %v", len(declined), declined)
	t.Logf("fields decoded: %v", fields)
}
