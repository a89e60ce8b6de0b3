package nats_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubestream/kubestream/pkg/natsembed"
	"github.com/kubestream/kubestream/pkg/resume"
	"github.com/kubestream/kubestream/pkg/resume/resumetest"
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

// TestStateStoreConformance runs the suite every store passes, each
// subtest on a new embedded server (file storage). Every open is a new
// sink on a new connection (another process, or the replica that takes
// over).
func TestStateStoreConformance(t *testing.T) {
	t.Log("JetStream: embedded server, file storage")
	resumetest.Conformance(t, func(t *testing.T) resumetest.Open {
		srv := startEmbedded(t, t.TempDir())
		return func(t *testing.T, cluster string) resume.Store {
			ctx := resumetest.Context(t)
			return stateStore(t, ctx, jetStreamSink(t, ctx, srv.URL(), natssink.Options{}), cluster)
		}
	})
}

// TestStateBucketLayout: the bucket is what docs/nats.md says:
// KUBESTREAM_STATE, history 1, file storage, keys by StateKey, values
// {"v":1,...}.
func TestStateBucketLayout(t *testing.T) {
	ctx := resumetest.Context(t)
	srv := startEmbedded(t, t.TempDir())
	s := jetStreamSink(t, ctx, srv.URL(), natssink.Options{})
	st := stateStore(t, ctx, s, "prod")
	awkwardKeys := resumetest.AwkwardKeys()
	resumetest.Write(t, ctx, st, awkwardKeys)
	resumetest.WantState(t, resumetest.Load(t, ctx, st), awkwardKeys)

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

// TestStateStoreAfterServerRestart: an embedded server restarted on the
// same data directory loads what the store wrote before.
func TestStateStoreAfterServerRestart(t *testing.T) {
	ctx := resumetest.Context(t)
	dir := t.TempDir()
	srv := startEmbedded(t, dir)
	st := stateStore(t, ctx, jetStreamSink(t, ctx, srv.URL(), natssink.Options{}), "prod")
	resumetest.Reopened(t, st, func() resume.Store {
		srv.Shutdown()
		srv = startEmbedded(t, dir)
		return stateStore(t, ctx, jetStreamSink(t, ctx, srv.URL(), natssink.Options{}), "prod")
	})
}

func TestStateStoreOnCoreNATS(t *testing.T) {
	ctx := resumetest.Context(t)
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
	ctx := resumetest.Context(t)
	srv := startEmbedded(t, t.TempDir())
	s := jetStreamSink(t, ctx, srv.URL(), natssink.Options{StateBucket: "team_a-state"})
	resumetest.Write(t, ctx, stateStore(t, ctx, s, "prod"), resumetest.AwkwardKeys())
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
		puts[k] = resumetest.Entry(fmt.Sprint(i), "1")
		if i >= 10 {
			dels = append(dels, k)
		}
	}
	resumetest.Write(t, ctx, st, puts)
	resumetest.Write(t, ctx, st, nil, dels...)
	live := map[string]resume.Entry{}
	for i := range 10 {
		live[fmt.Sprintf("pods/ns/p-%d", i)] = resumetest.Entry(fmt.Sprint(i), "1")
	}
	return live
}

// TestStateStoreRemovalMarkersExpire: on the embedded server (NATS 2.11+)
// the server drops the markers removals leave after the marker TTL, so the
// bucket holds one message per live entry.
func TestStateStoreRemovalMarkersExpire(t *testing.T) {
	ctx := resumetest.Context(t)
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
	resumetest.WantState(t, resumetest.Load(t, ctx, st), live)
}

// TestStateStoreOnOlderServer: nats-server 2.9 (the Debian package, a
// separate process) has no per-message TTLs; the store works there too and
// purges its own markers.
func TestStateStoreOnOlderServer(t *testing.T) {
	ctx := resumetest.Context(t)
	proc := natstest.StartProcess(t, natstest.ProcessOptions{})
	s := jetStreamSink(t, ctx, proc.URL(), natssink.Options{StateMarkerTTL: time.Second})
	st := stateStore(t, ctx, s, "prod")
	awkwardKeys := resumetest.AwkwardKeys()
	resumetest.Write(t, ctx, st, awkwardKeys)
	resumetest.WantState(t, resumetest.Load(t, ctx, st), awkwardKeys)
	resumetest.Write(t, ctx, st, nil, "")
	for k := range awkwardKeys {
		if k != "" {
			resumetest.Write(t, ctx, st, nil, k)
		}
	}
	live := churn(t, ctx, st)
	if n := bucketMessages(t, ctx, proc.URL(), natssink.DefaultStateBucket); n <= uint64(len(live)) {
		t.Fatalf("bucket holds %d messages right after the removals, want the markers too", n)
	}
	time.Sleep(1100 * time.Millisecond)
	// The next write purges markers older than the TTL.
	resumetest.Write(t, ctx, st, map[string]resume.Entry{"pods/ns/p-0": resumetest.Entry("0", "2")})
	live["pods/ns/p-0"] = resumetest.Entry("0", "2")
	if n := bucketMessages(t, ctx, proc.URL(), natssink.DefaultStateBucket); n != uint64(len(live)) {
		t.Fatalf("bucket holds %d messages after the purge, want %d (one per live key)", n, len(live))
	}
	resumetest.WantState(t, resumetest.Load(t, ctx, st), live)
}
