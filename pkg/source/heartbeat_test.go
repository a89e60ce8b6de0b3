package source

import (
	"testing"

	"github.com/kubestream/kubestream/internal/testobj"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// A heartbeat is taken only when the handler emitted exactly what the
// informer's store holds: same keys, uids and resourceVersions.
func TestCaughtUp(t *testing.T) {
	a1 := testobj.ConfigMap("ns", "a", "u1", "1", nil)
	a2 := testobj.ConfigMap("ns", "a", "u1", "2", nil)
	a3 := testobj.ConfigMap("ns", "a", "u3", "3", nil) // re-created under the name
	b := testobj.ConfigMap("ns", "b", "u2", "1", nil)
	// After a relist the store holds new objects of the same state.
	a2again := testobj.ConfigMap("ns", "a", "u1", "2", nil)
	w := &watchedKind{kind: kinds.ConfigMaps, emitted: map[string]change.Object{"ns/a": a2, "ns/b": b}}
	for _, tc := range []struct {
		name  string
		store []any
		want  bool
	}{
		{"same objects", []any{a2, b}, true},
		{"same states, other copies", []any{a2again, b}, true},
		{"an update not handled yet", []any{a1, b}, false},
		{"a re-create not handled yet", []any{a3, b}, false},
		{"a create not handled yet", []any{a2, b, testobj.ConfigMap("ns", "c", "u4", "4", nil)}, false},
		{"a delete not handled yet", []any{a2}, false},
	} {
		if got := caughtUp(w, tc.store); got != tc.want {
			t.Errorf("%s: caughtUp = %v, want %v", tc.name, got, tc.want)
		}
	}
}
