// Package resumetest is the conformance suite every resume.Store must pass,
// and the small helpers its tests share.
//
// A store's test calls Conformance with a function that sets up fresh,
// empty storage (a broker, a server, a directory) for one subtest and
// returns how to open stores of a cluster on it:
//
//	func TestStateStoreConformance(t *testing.T) {
//		resumetest.Conformance(t, func(t *testing.T) resumetest.Open {
//			dir := t.TempDir()
//			return func(t *testing.T, cluster string) resume.Store { ... }
//		})
//	}
//
// Store keys are opaque: the suite uses keys with dots, empty namespaces,
// uid segments, spaces, tabs, non-ASCII letters, the bytes that mean
// something in NATS subjects or in escapes ('.', '*', '>', '%', '=') and
// the empty key. Every store must round-trip all of them: the tracker never
// writes the empty key, but nothing in the Store contract forbids it and
// every store here keeps it. Keys are valid UTF-8 (Kubernetes names are);
// other byte strings are not required (a JSON file cannot hold them).
package resumetest

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/kubestream/kubestream/pkg/resume"
)

// Timeout bounds the store calls of one test (Context).
const Timeout = 2 * time.Minute

// Context returns a context for store calls in t: t's logger, cancelled
// after Timeout or when t ends.
func Context(t testing.TB) context.Context {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	t.Cleanup(cancel)
	return ctx
}

// Entry returns the entry of uid at resourceVersion rv ("" for an intent).
func Entry(uid, rv string) resume.Entry { return resume.Entry{UID: uid, ResourceVersion: rv} }

// Write writes puts and deletes to st, failing t on an error.
func Write(t testing.TB, ctx context.Context, st resume.Store, puts map[string]resume.Entry, deletes ...string) {
	t.Helper()
	if err := st.Write(ctx, puts, deletes); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

// Load loads st, failing t on an error.
func Load(t testing.TB, ctx context.Context, st resume.Store) map[string]resume.Entry {
	t.Helper()
	got, err := st.Load(ctx)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return got
}

// WantState fails t, naming every missing, different and unexpected key,
// unless got holds exactly want.
func WantState(t testing.TB, got, want map[string]resume.Entry) {
	t.Helper()
	if maps.Equal(got, want) {
		return
	}
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("missing %q (want %+v)", k, w)
		} else if g != w {
			t.Errorf("%q = %+v, want %+v", k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %q = %+v", k, g)
		}
	}
	t.FailNow()
}

// AwkwardKeys returns (a new copy of) store keys with dots, empty
// namespaces, the uid the tracker adds, and bytes that mean something in
// subjects, key separators or escapes, and their entries. Among them:
// "pods/default/web-0" (uid u1, rv 100), "nodes//node-a" (u4, 103) and
// "configmaps/kube-system/kube-root-ca.crt" (u2, 101).
func AwkwardKeys() map[string]resume.Entry {
	return map[string]resume.Entry{
		"pods/default/web-0":                         Entry("u1", "100"),
		"configmaps/kube-system/kube-root-ca.crt":    Entry("u2", "101"),
		"nodes//ip-10-0-0-1.ec2.internal":            Entry("u3", "102"),
		"nodes//node-a":                              Entry("u4", "103"),
		"deployments/team.a/api.v2":                  Entry("u5", "104"),
		"configmaps/default/dots...and-dashes_under": Entry("u6", "105"),
		// Store keys are opaque: the tracker adds the uid.
		"pods/default/web-1/0b3c6d2e-1111-4a5b-9c3d-000000000001": Entry("0b3c6d2e-1111-4a5b-9c3d-000000000001", "106"),
		"nodes//node-b/0b3c6d2e-1111-4a5b-9c3d-000000000002":      Entry("0b3c6d2e-1111-4a5b-9c3d-000000000002", ""),
		"odd/key with spaces/%2F/and/more/slashes":                Entry("u9", "107"),
		"odd/a=b%2E*>/ spaces/=/%":                                Entry("u10", "108"),
		"odd/.leading/trailing./../*/>/":                          Entry("u11", "109"),
		"odd/tab\there/ünïcode-名前":                                Entry("u12", "110"),
		"":                                                        Entry("u13", "111"),
	}
}

// Open opens a store of cluster on the storage of one subtest, as another
// process (a restart, the replica taking over) would: a new store each
// call where the storage has connections, the same one where it has not
// (memory). Its stores are closed when t ends.
type Open func(t *testing.T, cluster string) resume.Store

// Conformance runs, as subtests of t, what every resume.Store must do.
// storage is called once per subtest with the subtest's t and sets up
// fresh, empty storage (stores of every cluster on it start empty); it
// returns how to open stores on it.
//
// The subtests: Load of an empty store is empty and not nil; awkward keys
// round-trip; later writes win and deletes remove across several Writes,
// as in resume.MemoryStore (a key both put and deleted in one Write ends
// up put); deleting a key that does not exist is fine; a store opened again
// for the same cluster loads the same (Reopened); clusters sharing the
// storage, with names that collide when escaped carelessly ("prod/eu",
// "prod.eu", "prod%2Feu"), are isolated; 10,000 puts in one Write are all
// loaded (the durations are logged).
func Conformance(t *testing.T, storage func(t *testing.T) Open) {
	t.Run("empty store loads empty", func(t *testing.T) {
		ctx := Context(t)
		st := storage(t)(t, "prod")
		got := Load(t, ctx, st)
		if got == nil {
			t.Fatal("Load of an empty store returned a nil map")
		}
		WantState(t, got, map[string]resume.Entry{})
		Write(t, ctx, st, nil)
		Write(t, ctx, st, map[string]resume.Entry{})
		got = Load(t, ctx, st)
		if got == nil {
			t.Fatal("Load after empty Writes returned a nil map")
		}
		WantState(t, got, map[string]resume.Entry{})
	})
	t.Run("awkward keys round-trip", func(t *testing.T) {
		ctx := Context(t)
		st := storage(t)(t, "prod")
		Write(t, ctx, st, AwkwardKeys())
		WantState(t, Load(t, ctx, st), AwkwardKeys())
	})
	t.Run("later writes win and deletes remove", func(t *testing.T) {
		laterWritesWin(t, storage(t)(t, "prod"))
	})
	t.Run("deleting a missing key is fine", func(t *testing.T) {
		ctx := Context(t)
		st := storage(t)(t, "prod")
		Write(t, ctx, st, nil, "pods/a/never", "")
		WantState(t, Load(t, ctx, st), map[string]resume.Entry{})
		Write(t, ctx, st, map[string]resume.Entry{"pods/a/x": Entry("1", "1")})
		Write(t, ctx, st, nil, "pods/a/never", "pods/a/x")
		// Deleted already: deleting again is fine too.
		Write(t, ctx, st, nil, "pods/a/x", "pods/a/x")
		WantState(t, Load(t, ctx, st), map[string]resume.Entry{})
	})
	t.Run("reopened store loads the same", func(t *testing.T) {
		open := storage(t)
		Reopened(t, open(t, "prod"), func() resume.Store { return open(t, "prod") })
	})
	t.Run("clusters are isolated", func(t *testing.T) {
		clustersIsolated(t, storage(t))
	})
	t.Run("10,000 puts in one write", func(t *testing.T) {
		ctx := Context(t)
		st := storage(t)(t, "prod")
		puts := tenThousandPuts()
		start := time.Now()
		Write(t, ctx, st, puts)
		wrote := time.Since(start)
		start = time.Now()
		got := Load(t, ctx, st)
		loaded := time.Since(start)
		t.Logf("Write of %d puts %s, Load of %d positions %s", len(puts), wrote, len(got), loaded)
		WantState(t, got, puts)
	})
}

// laterWritesWin writes several batches to the empty store st, with
// updates, deletes (of keys written, never written, and put again in the
// same batch) and re-creates under new uids, and checks after each that st
// loads what a resume.MemoryStore given the same batches loads.
func laterWritesWin(t *testing.T, st resume.Store) {
	t.Helper()
	ctx := Context(t)
	model := resume.NewMemoryStore()
	steps := []struct {
		puts    map[string]resume.Entry
		deletes []string
	}{
		{puts: map[string]resume.Entry{"pods/a/x": Entry("1", "1"), "pods/a/y": Entry("2", "1"), "nodes//n.1": Entry("3", "1")}},
		{puts: map[string]resume.Entry{"pods/a/x": Entry("1", "2")}, deletes: []string{"pods/a/y"}},
		// A delete of something never written, and a re-create under a new uid.
		{puts: map[string]resume.Entry{"pods/a/y": Entry("4", "7")}, deletes: []string{"pods/b/never", "nodes//n.1"}},
		{deletes: []string{"pods/a/x"}},
		{puts: map[string]resume.Entry{"nodes//n.1": Entry("5", "9"), "pods/a/x": Entry("6", "10")}},
		// Put and delete of one key in one batch: the put wins, as in the
		// memory store.
		{puts: map[string]resume.Entry{"pods/a/z": Entry("7", "11")}, deletes: []string{"pods/a/z", "pods/a/y"}},
	}
	for i, step := range steps {
		Write(t, ctx, st, step.puts, step.deletes...)
		if err := model.Write(ctx, step.puts, step.deletes); err != nil {
			t.Fatal(err)
		}
		want, _ := model.Load(ctx)
		t.Logf("step %d: %d positions", i, len(want))
		WantState(t, Load(t, ctx, st), want)
	}
}

// Reopened writes AwkwardKeys to the empty store first, then an update of
// "pods/default/web-0" and the removal of "nodes//node-a", checks that first
// loads that, and that the store reopen returns (another process, a
// restarted server: whatever reopen does) loads the same.
func Reopened(t *testing.T, first resume.Store, reopen func() resume.Store) {
	t.Helper()
	ctx := Context(t)
	Write(t, ctx, first, AwkwardKeys())
	Write(t, ctx, first, map[string]resume.Entry{"pods/default/web-0": Entry("u1", "200")}, "nodes//node-a")
	want := AwkwardKeys()
	want["pods/default/web-0"] = Entry("u1", "200")
	delete(want, "nodes//node-a")
	WantState(t, Load(t, ctx, first), want)
	WantState(t, Load(t, ctx, reopen()), want)
}

// clusters are the cluster names clustersIsolated uses: prefixes of each
// other ("prod/eu" starts with "prod/"), names that are two subject tokens
// if not escaped ("prod.eu"), and the escaped forms of those.
var clusters = []string{"prod", "prod/eu", "prod.eu", "staging", "prod%2Feu", "prod=2Eeu"}

// clustersIsolated opens a store of every one of clusters on one storage,
// writes each the same keys with values of its own (and keys that contain
// the cluster name), removes one key in one cluster, and checks that every
// store loads exactly its own entries.
func clustersIsolated(t *testing.T, open Open) {
	t.Helper()
	ctx := Context(t)
	stores := map[string]resume.Store{}
	for _, cl := range clusters {
		stores[cl] = open(t, cl)
	}
	own := func(i int, cl string) map[string]resume.Entry {
		return map[string]resume.Entry{
			"pods/default/web-0":       Entry(cl+"-u", fmt.Sprint(i)),
			"pods/eu/only-" + cl:       Entry(cl+"-v", "1"),
			"nodes//node." + cl + ".x": Entry(cl+"-w", "1"),
			"eu/pods/default/web-0":    Entry(cl+"-x", "1"),
		}
	}
	for i, cl := range clusters {
		Write(t, ctx, stores[cl], own(i, cl))
	}
	Write(t, ctx, stores["staging"], nil, "pods/default/web-0")
	for i, cl := range clusters {
		want := own(i, cl)
		if cl == "staging" {
			delete(want, "pods/default/web-0")
		}
		WantState(t, Load(t, ctx, stores[cl]), want)
	}
}

// tenThousandPuts returns 10,000 entries of pods in 37 namespaces, with
// dots in their names.
func tenThousandPuts() map[string]resume.Entry {
	puts := make(map[string]resume.Entry, 10000)
	for i := range 10000 {
		puts[fmt.Sprintf("pods/ns-%d/pod-%d.abc", i%37, i)] = Entry(fmt.Sprintf("0b3c6d2e-%08d", i), fmt.Sprint(1000000+i))
	}
	return puts
}
