package resume_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/resume"
)

func ev(op kubestreamv1.Operation, name, uid, rv string) *kubestreamv1.Event {
	return &kubestreamv1.Event{Operation: op, Object: &kubestreamv1.ObjectRef{Resource: "pods", Namespace: "ns", Name: name, Uid: uid, ResourceVersion: rv},
		Payload: &kubestreamv1.Event_Change{Change: &kubestreamv1.ObjectChange{}}}
}

const (
	created = kubestreamv1.Operation_OPERATION_CREATED
	updated = kubestreamv1.Operation_OPERATION_UPDATED
	deleted = kubestreamv1.Operation_OPERATION_DELETED
)

func dump(t *testing.T, s resume.Store) string {
	t.Helper()
	m, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k, e := range m {
		out = append(out, k+"="+e.ResourceVersion)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// An incarnation is saved (as an intent) before its first event goes out,
// its position after the ack, and removed after its delete's ack.
func TestTrackerIntentsThenPositionsThenRemovals(t *testing.T) {
	ctx := context.Background()
	store := resume.NewMemoryStore()
	tr := resume.NewTracker(store, 0)
	if err := tr.Intend(ctx, []*kubestreamv1.Event{ev(created, "a", "u1", "1"), ev(deleted, "b", "u9", "9")}); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, store); got != "pods/ns/a/u1=" {
		t.Fatalf("after the intent: %q, want the uid saved without a resourceVersion (deletes need none)", got)
	}
	tr.Acknowledged(ev(created, "a", "u1", "1"))
	tr.Acknowledged(ev(updated, "a", "u1", "2"))
	if err := tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, store); got != "pods/ns/a/u1=2" {
		t.Fatalf("after the acks: %q", got)
	}
	// A known uid needs no intent: no write at all.
	store.Fail = errors.New("store down")
	if err := tr.Intend(ctx, []*kubestreamv1.Event{ev(updated, "a", "u1", "3")}); err != nil {
		t.Fatalf("intent for a known uid wrote to the store: %v", err)
	}
	// A failed flush keeps its batch for the next one.
	tr.Acknowledged(ev(deleted, "a", "u1", "3"))
	if err := tr.Flush(ctx); err == nil {
		t.Fatal("flush to a failing store succeeded")
	}
	store.Fail = nil
	if err := tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, store); got != "" {
		t.Fatalf("after the delete: %q, want nothing saved", got)
	}
	if st := tr.Stats(); st.Intents != 1 || st.Failures != 1 || st.Known != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTrackerLoadGroupsIncarnationsByObject(t *testing.T) {
	ctx := context.Background()
	store := resume.NewMemoryStore()
	_ = store.Write(ctx, map[string]resume.Entry{
		"pods/ns/a/u1":  {UID: "u1", ResourceVersion: "5"},
		"pods/ns/a/u2":  {UID: "u2"},
		"nodes//n1/u3":  {UID: "u3", ResourceVersion: "7"},
		"pods/ns/b/bad": {UID: "other"},
	}, nil)
	tr := resume.NewTracker(store, 0)
	pos, err := tr.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pos["pods/ns/a"]) != 2 || len(pos["nodes//n1"]) != 1 || len(pos["pods/ns/b"]) != 0 {
		t.Fatalf("positions %v", pos)
	}
	// Loaded uids are known: no intents for them.
	store.Fail = errors.New("down")
	if err := tr.Intend(ctx, []*kubestreamv1.Event{ev(updated, "a", "u1", "6")}); err != nil {
		t.Fatal(err)
	}
}

func TestFileStoreRoundTripAndChecks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.json")
	fs, err := resume.NewFileStore(path, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if got := dump(t, fs); got != "" {
		t.Fatalf("a missing file is an empty state, got %q", got)
	}
	puts := map[string]resume.Entry{}
	for i := range 1000 {
		puts[fmt.Sprintf("configmaps/ns/app.%d.properties/u%d", i, i)] = resume.Entry{UID: fmt.Sprintf("u%d", i), ResourceVersion: "1"}
	}
	if err := fs.Write(ctx, puts, nil); err != nil {
		t.Fatal(err)
	}
	if err := fs.Write(ctx, map[string]resume.Entry{"nodes//n/u": {UID: "u", ResourceVersion: "2"}}, []string{"configmaps/ns/app.0.properties/u0"}); err != nil {
		t.Fatal(err)
	}
	again, _ := resume.NewFileStore(path, "prod")
	m, err := again.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1000 || m["nodes//n/u"].ResourceVersion != "2" {
		t.Fatalf("reloaded %d entries", len(m))
	}
	other, _ := resume.NewFileStore(path, "staging")
	if _, err := other.Load(ctx); err == nil || !strings.Contains(err.Error(), `belongs to cluster "prod"`) {
		t.Fatalf("loading another cluster's file: %v", err)
	}
	if err := os.WriteFile(path, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := again.Load(ctx); err == nil || !strings.Contains(err.Error(), "remove it") {
		t.Fatalf("a corrupt file: %v, want a clear error", err)
	}
	if _, err := resume.NewFileStore("/nonexistent-dir/state.json", "prod"); err == nil {
		t.Fatal("a file in a missing directory was accepted")
	}
}

func TestEntryFormatIsVersioned(t *testing.T) {
	b := resume.Encode(resume.Entry{UID: "u1", ResourceVersion: "42"})
	if string(b) != `{"v":1,"uid":"u1","rv":"42"}` {
		t.Fatalf("encoded %s", b)
	}
	if _, err := resume.Decode([]byte(`{"v":2,"uid":"u1"}`)); err == nil {
		t.Fatal("a newer format was read")
	}
}
