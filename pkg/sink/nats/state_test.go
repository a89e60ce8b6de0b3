package nats_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/klog/v2/ktesting"

	"github.com/kubestream/kubestream/pkg/natsembed"
	"github.com/kubestream/kubestream/pkg/resume"
	natssink "github.com/kubestream/kubestream/pkg/sink/nats"
	"github.com/kubestream/kubestream/pkg/sink/nats/natstest"
)

// startEmbedded starts the server kubestream runs by default, on dir.
func startEmbedded(t testing.TB, dir string) *natsembed.Server {
	t.Helper()
	srv, err := natsembed.Start(natsembed.Options{Dir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func stateCtx(t testing.TB) context.Context {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// jetStreamSink is the sink as the command builds it for the embedded
// server: stream KUBESTREAM, created.
func jetStreamSink(t testing.TB, ctx context.Context, url string, opts natssink.Options) *natssink.Sink {
	t.Helper()
	if opts.Stream.Name == "" {
		opts.Stream = natssink.StreamOptions{Name: "KUBESTREAM", Create: true, Storage: "file", Replicas: 1, MaxAge: time.Hour, DuplicateWindow: time.Minute}
	}
	s, err := natssink.New(ctx, connect(t, url), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func stateStore(t testing.TB, ctx context.Context, s *natssink.Sink, cluster string) resume.Store {
	t.Helper()
	st, err := s.StateStore(ctx, cluster)
	if err != nil {
		t.Fatalf("StateStore(%q): %v", cluster, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func write(t testing.TB, ctx context.Context, st resume.Store, puts map[string]resume.Entry, deletes ...string) {
	t.Helper()
	if err := st.Write(ctx, puts, deletes); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func load(t testing.TB, ctx context.Context, st resume.Store) map[string]resume.Entry {
	t.Helper()
	got, err := st.Load(ctx)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return got
}

func wantState(t testing.TB, got, want map[string]resume.Entry) {
	t.Helper()
	if maps.Equal(got, want) {
		return
	}
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("missing %s (want %+v)", k, w)
		} else if g != w {
			t.Errorf("%s = %+v, want %+v", k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s = %+v", k, g)
		}
	}
	t.FailNow()
}

func entry(uid, rv string) resume.Entry { return resume.Entry{UID: uid, ResourceVersion: rv} }

// awkwardKeys are store keys with dots, empty namespaces, the uid the
// tracker adds, and bytes that mean something in subjects or key escapes.
var awkwardKeys = map[string]resume.Entry{
	"pods/default/web-0":                                      entry("u1", "100"),
	"configmaps/kube-system/kube-root-ca.crt":                 entry("u2", "101"),
	"nodes//ip-10-0-0-1.ec2.internal":                         entry("u3", "102"),
	"nodes//node-a":                                           entry("u4", "103"),
	"deployments/team.a/api.v2":                               entry("u5", "104"),
	"pods/default/web-1/0b3c6d2e-1111-4a5b-9c3d-000000000001": entry("0b3c6d2e-1111-4a5b-9c3d-000000000001", "105"),
	"nodes//node-b/0b3c6d2e-1111-4a5b-9c3d-000000000002":      entry("0b3c6d2e-1111-4a5b-9c3d-000000000002", ""),
	"odd/a=b%2E*>/ spaces/=/%":                                entry("u8", "106"),
	"":                                                        entry("u9", "107"),
}

var kvKeyRE = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

func TestStateKeyLayout(t *testing.T) {
	for _, tc := range []struct{ cluster, key, want string }{
		{"prod", "pods/default/web-0", "prod.pods.default.web-0"},
		{"prod", "nodes//node-a", "prod.nodes.=.node-a"},
		{"prod", "configmaps/kube-system/kube-root-ca.crt", "prod.configmaps.kube-system.kube-root-ca=2Ecrt"},
		{"prod.eu", "pods/a/b/uid-1", "prod=2Eeu.pods.a.b.uid-1"},
		{"", "pods/a=b/%", "=.pods.a=3Db.=25"},
	} {
		got := natssink.StateKey(tc.cluster, tc.key)
		if got != tc.want {
			t.Errorf("StateKey(%q, %q) = %q, want %q", tc.cluster, tc.key, got, tc.want)
		}
		c, k, err := natssink.ParseStateKey(got)
		if err != nil || c != tc.cluster || k != tc.key {
			t.Errorf("ParseStateKey(%q) = %q, %q, %v; want %q, %q", got, c, k, err, tc.cluster, tc.key)
		}
	}
	// Random keys: every one is a valid key-value key and comes back.
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("a.b/=%*> -_\x00\xffZ9")
	for range 2000 {
		mk := func() string {
			b := make([]byte, rng.IntN(8))
			for i := range b {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			}
			return string(b)
		}
		cluster, key := mk(), mk()
		kv := natssink.StateKey(cluster, key)
		if !kvKeyRE.MatchString(kv) || strings.HasPrefix(kv, ".") || strings.HasSuffix(kv, ".") || strings.Contains(kv, "..") {
			t.Fatalf("StateKey(%q, %q) = %q: not a valid key-value key", cluster, key, kv)
		}
		c, k, err := natssink.ParseStateKey(kv)
		if err != nil || c != cluster || k != key {
			t.Fatalf("ParseStateKey(StateKey(%q, %q) = %q) = %q, %q, %v", cluster, key, kv, c, k, err)
		}
	}
	for _, bad := range []string{"prod", "prod.a%2E", "prod.=zz", "prod.=2D"} {
		if _, _, err := natssink.ParseStateKey(bad); err == nil {
			t.Errorf("ParseStateKey(%q) accepted a key StateKey does not make", bad)
		}
	}
}

func TestStateStoreRoundTrip(t *testing.T) {
	ctx := stateCtx(t)
	srv := startEmbedded(t, t.TempDir())
	s := jetStreamSink(t, ctx, srv.URL(), natssink.Options{})
	st := stateStore(t, ctx, s, "prod")
	wantState(t, load(t, ctx, st), map[string]resume.Entry{})
	write(t, ctx, st, awkwardKeys)
	wantState(t, load(t, ctx, st), awkwardKeys)

	// The bucket is what docs/nats.md says: KUBESTREAM_STATE, history 1,
	// file storage, keys by StateKey, values {"v":1,...}.
	js, err := jetstream.New(connect(t, srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, natssink.DefaultStateBucket)
	if err != nil {
		t.Fatal(err)
	}
	status, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info := status.(*jetstream.KeyValueBucketStatus).StreamInfo()
	if status.History() != 1 || info.Config.Storage != jetstream.FileStorage || info.Config.Replicas != 1 || !info.Config.AllowMsgTTL {
		t.Errorf("bucket: history %d, storage %s, replicas %d, msg TTL %v; want 1, file, 1, true",
			status.History(), info.Config.Storage, info.Config.Replicas, info.Config.AllowMsgTTL)
	}
	if status.Values() != uint64(len(awkwardKeys)) {
		t.Errorf("bucket holds %d messages, want %d", status.Values(), len(awkwardKeys))
	}
	e, err := kv.Get(ctx, "prod.configmaps.kube-system.kube-root-ca=2Ecrt")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"v":1,"uid":"u2","rv":"101"}`; string(e.Value()) != want {
		t.Errorf("value = %s, want %s", e.Value(), want)
	}
}

func TestStateStoreLaterWritesWinAndDeletesRemove(t *testing.T) {
	ctx := stateCtx(t)
	srv := startEmbedded(t, t.TempDir())
	s := jetStreamSink(t, ctx, srv.URL(), natssink.Options{})
	st := stateStore(t, ctx, s, "prod")
	model := resume.NewMemoryStore()
	steps := []struct {
		puts    map[string]resume.Entry
		deletes []string
	}{
		{puts: map[string]resume.Entry{"pods/a/x": entry("1", "1"), "pods/a/y": entry("2", "1"), "nodes//n.1": entry("3", "1")}},
		{puts: map[string]resume.Entry{"pods/a/x": entry("1", "2")}, deletes: []string{"pods/a/y"}},
		{puts: map[string]resume.Entry{"pods/a/y": entry("4", "7")}, deletes: []string{"pods/b/never", "nodes//n.1"}},
		{deletes: []string{"pods/a/x"}},
		{puts: map[string]resume.Entry{"nodes//n.1": entry("5", "9"), "pods/a/x": entry("6", "10")}},
		{puts: map[string]resume.Entry{"pods/a/z": entry("7", "11")}, deletes: []string{"pods/a/z", "pods/a/y"}},
	}
	for i, step := range steps {
		write(t, ctx, st, step.puts, step.deletes...)
		if err := model.Write(ctx, step.puts, step.deletes); err != nil {
			t.Fatal(err)
		}
		want, _ := model.Load(ctx)
		t.Logf("step %d: %d positions", i, len(want))
		wantState(t, load(t, ctx, st), want)
	}
}

func TestStateStoreReopenedLoadsTheSame(t *testing.T) {
	ctx := stateCtx(t)
	dir := t.TempDir()
	srv := startEmbedded(t, dir)
	s1 := jetStreamSink(t, ctx, srv.URL(), natssink.Options{})
	st1 := stateStore(t, ctx, s1, "prod")
	write(t, ctx, st1, awkwardKeys)
	write(t, ctx, st1, map[string]resume.Entry{"pods/default/web-0": entry("u1", "200")}, "nodes//node-a")
	want := load(t, ctx, st1)
	if _, ok := want["nodes//node-a"]; ok || want["pods/default/web-0"].ResourceVersion != "200" {
		t.Fatalf("first store loaded %v", want)
	}

	// Another sink on another connection (the replica taking over).
	s2 := jetStreamSink(t, ctx, srv.URL(), natssink.Options{})
	wantState(t, load(t, ctx, stateStore(t, ctx, s2, "prod")), want)

	// A restarted embedded server on the same data directory.
	srv.Shutdown()
	srv = startEmbedded(t, dir)
	s3 := jetStreamSink(t, ctx, srv.URL(), natssink.Options{})
	wantState(t, load(t, ctx, stateStore(t, ctx, s3, "prod")), want)
}

func TestStateStoreClustersAreIsolated(t *testing.T) {
	ctx := stateCtx(t)
	srv := startEmbedded(t, t.TempDir())
	s := jetStreamSink(t, ctx, srv.URL(), natssink.Options{})
	// "prod.eu" would be two tokens if not escaped: it must not leak into
	// "prod".
	clusters := []string{"prod", "prod.eu", "staging", "prod=2Eeu"}
	stores := map[string]resume.Store{}
	own := func(i int, cl string) map[string]resume.Entry {
		return map[string]resume.Entry{
			"pods/default/web-0":    entry(cl+"-u", fmt.Sprint(i)),
			"pods/eu/only-" + cl:    entry(cl+"-v", "1"),
			"eu/pods/default/web-0": entry(cl+"-x", "1"),
		}
	}
	for i, cl := range clusters {
		stores[cl] = stateStore(t, ctx, s, cl)
		write(t, ctx, stores[cl], own(i, cl))
	}
	write(t, ctx, stores["staging"], nil, "pods/default/web-0")
	for i, cl := range clusters {
		want := own(i, cl)
		if cl == "staging" {
			delete(want, "pods/default/web-0")
		}
		wantState(t, load(t, ctx, stores[cl]), want)
	}
}

func TestStateStoreTenThousandPutsInOneWrite(t *testing.T) {
	ctx := stateCtx(t)
	srv := startEmbedded(t, t.TempDir())
	s := jetStreamSink(t, ctx, srv.URL(), natssink.Options{})
	st := stateStore(t, ctx, s, "prod")
	puts := make(map[string]resume.Entry, 10000)
	for i := range 10000 {
		puts[fmt.Sprintf("pods/ns-%d/pod-%d.abc", i%37, i)] = entry(fmt.Sprintf("0b3c6d2e-%08d", i), fmt.Sprint(1000000+i))
	}
	start := time.Now()
	write(t, ctx, st, puts)
	wrote := time.Since(start)
	start = time.Now()
	got := load(t, ctx, st)
	loaded := time.Since(start)
	t.Logf("JetStream (embedded server, file storage): Write of 10,000 puts %s, Load of 10,000 positions %s", wrote, loaded)
	wantState(t, got, puts)
}

func TestStateStoreOnCoreNATS(t *testing.T) {
	ctx := stateCtx(t)
	srv := startEmbedded(t, t.TempDir())
	s, err := natssink.New(ctx, connect(t, srv.URL()), natssink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.StateStore(ctx, "prod")
	if !errors.Is(err, natssink.ErrNoStateStore) || !errors.Is(err, resume.ErrNoStore) {
		t.Fatalf("StateStore on core NATS: %v, want ErrNoStateStore matching resume.ErrNoStore", err)
	}
	t.Logf("error: %v", err)
}

func TestStateStoreBucketFlag(t *testing.T) {
	ctx := stateCtx(t)
	srv := startEmbedded(t, t.TempDir())
	s := jetStreamSink(t, ctx, srv.URL(), natssink.Options{StateBucket: "team_a-state"})
	write(t, ctx, stateStore(t, ctx, s, "prod"), awkwardKeys)
	js, _ := jetstream.New(connect(t, srv.URL()))
	if _, err := js.KeyValue(ctx, "team_a-state"); err != nil {
		t.Fatalf("bucket of --nats-state-bucket: %v", err)
	}
	if _, err := js.KeyValue(ctx, natssink.DefaultStateBucket); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("default bucket: %v, want not found", err)
	}
	if _, err := natssink.New(ctx, connect(t, srv.URL()), natssink.Options{StateBucket: "no.dots"}); err == nil || !strings.Contains(err.Error(), "--nats-state-bucket") {
		t.Fatalf("New with bucket %q: %v, want an error naming --nats-state-bucket", "no.dots", err)
	}
}

// bucketMessages is how many messages the bucket's stream holds: values
// and removal markers.
func bucketMessages(t testing.TB, ctx context.Context, url, bucket string) uint64 {
	t.Helper()
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	str, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func churn(t testing.TB, ctx context.Context, st resume.Store) map[string]resume.Entry {
	t.Helper()
	puts := map[string]resume.Entry{}
	var dels []string
	for i := range 50 {
		k := fmt.Sprintf("pods/ns/p-%d", i)
		puts[k] = entry(fmt.Sprint(i), "1")
		if i >= 10 {
			dels = append(dels, k)
		}
	}
	write(t, ctx, st, puts)
	write(t, ctx, st, nil, dels...)
	live := map[string]resume.Entry{}
	for i := range 10 {
		live[fmt.Sprintf("pods/ns/p-%d", i)] = entry(fmt.Sprint(i), "1")
	}
	return live
}

// TestStateStoreRemovalMarkersExpire: on the embedded server (NATS 2.11+)
// the server drops the markers removals leave after the marker TTL, so the
// bucket holds one message per live entry.
func TestStateStoreRemovalMarkersExpire(t *testing.T) {
	ctx := stateCtx(t)
	srv := startEmbedded(t, t.TempDir())
	s := jetStreamSink(t, ctx, srv.URL(), natssink.Options{StateMarkerTTL: time.Second})
	st := stateStore(t, ctx, s, "prod")
	live := churn(t, ctx, st)
	if n := bucketMessages(t, ctx, srv.URL(), natssink.DefaultStateBucket); n != 50 {
		t.Fatalf("bucket holds %d messages after 50 puts and 40 removals, want 50 (one per key)", n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := bucketMessages(t, ctx, srv.URL(), natssink.DefaultStateBucket)
		if n == uint64(len(live)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bucket still holds %d messages 30s after the removals, want %d", n, len(live))
		}
		time.Sleep(200 * time.Millisecond)
	}
	wantState(t, load(t, ctx, st), live)
}

// TestStateStoreOnOlderServer: nats-server 2.9 (the Debian package, a
// separate process) has no per-message TTLs; the store works there too and
// purges its own markers.
func TestStateStoreOnOlderServer(t *testing.T) {
	ctx := stateCtx(t)
	proc := natstest.StartProcess(t, natstest.ProcessOptions{})
	s := jetStreamSink(t, ctx, proc.URL(), natssink.Options{StateMarkerTTL: time.Second})
	st := stateStore(t, ctx, s, "prod")
	write(t, ctx, st, awkwardKeys)
	wantState(t, load(t, ctx, st), awkwardKeys)
	write(t, ctx, st, nil, "")
	for k := range awkwardKeys {
		if k != "" {
			write(t, ctx, st, nil, k)
		}
	}
	live := churn(t, ctx, st)
	if n := bucketMessages(t, ctx, proc.URL(), natssink.DefaultStateBucket); n <= uint64(len(live)) {
		t.Fatalf("bucket holds %d messages right after the removals, want the markers too", n)
	}
	time.Sleep(1100 * time.Millisecond)
	// The next write purges markers older than the TTL.
	write(t, ctx, st, map[string]resume.Entry{"pods/ns/p-0": entry("0", "2")})
	live["pods/ns/p-0"] = entry("0", "2")
	if n := bucketMessages(t, ctx, proc.URL(), natssink.DefaultStateBucket); n != uint64(len(live)) {
		t.Fatalf("bucket holds %d messages after the purge, want %d (one per live key)", n, len(live))
	}
	wantState(t, load(t, ctx, st), live)
}
