// Package faults runs the built kubestream binary against a real etcd and
// kube-apiserver and an in-process Kafka (kfake) over TCP, injects faults
// (broker outages, watch gaps that force a relist, lost acknowledgements and
// dropped connections, SIGKILL and SIGTERM restarts, leader failovers; one
// restart also against a separate nats-server with JetStream) while objects
// churn, and judges the result by the consumer contract with its reference
// implementation (pkg/consumer, on pkg/contract's rule): an
// independent franz-go reader applies every record of every partition of
// the event topics (a JetStream ordered consumer: the whole stream), and at
// quiescence it must hold exactly the apiserver's objects (uids and
// resourceVersions), must have seen a DELETED for every uid it saw that is
// gone, and its replay rounds must not have removed anything (Dropped()
// empty).
//
// Set FAULTS_SEED to replay a run's churn; every test logs its seed.
package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubestream/kubestream/internal/controlplane"
	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/consumer"
	"github.com/kubestream/kubestream/pkg/contract"
)

// binPath is the kubestream binary, built once in TestMain.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kubestream-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath, err = testbin.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// begin starts a fault test: ctx ends after within, or when the test ends
// (before its cleanups run); logTook logs how long the test took.
func begin(t *testing.T, within time.Duration) (ctx context.Context, logTook func()) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	t.Cleanup(cancel)
	return ctx, func() { t.Logf("took %s", time.Since(began).Round(100*time.Millisecond)) }
}

// seed returns FAULTS_SEED or a fresh seed, and logs it.
func seed(t *testing.T) int64 {
	t.Helper()
	s := time.Now().UnixNano()
	if v := os.Getenv("FAULTS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("FAULTS_SEED=%q: %v", v, err)
		}
		s = n
	}
	t.Logf("seed %d (FAULTS_SEED=%d replays this run's churn)", s, s)
	return s
}

// pool sizes a churner: the names it uses, and how many of them it creates
// before kubestream starts.
type pool struct{ names, populated int }

// populated is where most fault tests start: the seed (logged), a control
// plane with the test's namespace, and churners of pods (seeded with the
// seed) and config maps (seed+1) whose first names exist.
type populated struct {
	seed      int64
	cp        *controlplane.ControlPlane
	client    kubernetes.Interface
	pods, cms *churner
}

// startPopulated takes the seed, starts the control plane with namespace ns
// and creates the first pods and config maps of the two pools.
func startPopulated(ctx context.Context, t *testing.T, ns string, pods, cms pool) populated {
	t.Helper()
	s := seed(t)
	cp, client := testbin.StartControlPlane(ctx, t, ns)
	p := populated{seed: s, cp: cp, client: client,
		pods: newChurner(client, ns, "pods", "pod", pods.names, s),
		cms:  newChurner(client, ns, "configmaps", "cm", cms.names, s+1)}
	if err := p.pods.populate(ctx, pods.populated); err != nil {
		t.Fatal(err)
	}
	if err := p.cms.populate(ctx, cms.populated); err != nil {
		t.Fatal(err)
	}
	return p
}

// newKafka starts a kfake cluster; topics are left to kubestream's
// --kafka-create-topics.
func newKafka(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	kc, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	return kc
}

// ---------------------------------------------------------------------------
// The binary

type binary struct {
	cmd    *exec.Cmd
	args   []string // kubestream's command line, for restart
	stderr *testbin.SyncBuffer
	exited chan struct{}
	err    error // valid after exited is closed
	// exitedAt is when Wait returned, valid after exited is closed.
	exitedAt time.Time
	addr     string
}

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startBinary runs `kubestream run` with the Kafka sink and the given extra
// flags, serving /readyz on a free port.
func startBinary(t *testing.T, kubeconfig string, brokers []string, ns string, extra ...string) *binary {
	t.Helper()
	return startSink(t, kubeconfig, ns, append([]string{"--sink", "kafka", "--kafka-brokers", strings.Join(brokers, ","),
		"--kafka-create-topics", "--kafka-topic-partitions", "3"}, extra...)...)
}

// startSink runs `kubestream run` with the given sink flags (and any
// others), serving /readyz on a free port.
func startSink(t *testing.T, kubeconfig, ns string, sinkArgs ...string) *binary {
	t.Helper()
	addr := freeAddr(t)
	return startKubestream(t, addr, append([]string{"run", "--kubeconfig", kubeconfig, "--cluster-name", judgedCluster,
		"--kinds", "configmaps,pods", "--namespace", ns, "--listen-address", addr}, sinkArgs...))
}

// restart runs kubestream again with the same command line (and so the same
// --listen-address) after this process exited.
func (b *binary) restart(t *testing.T) *binary {
	t.Helper()
	select {
	case <-b.exited:
	default:
		t.Fatalf("restart of a kubestream that is still running")
	}
	return startKubestream(t, b.addr, b.args)
}

// awaitFirstStart waits for /readyz of a first start of b and for its first
// round, read by r in copies, and logs the round.
func awaitFirstStart(ctx context.Context, t *testing.T, b *binary, r *reader, copies int) roundStats {
	t.Helper()
	b.awaitReadyz(ctx, t, http.StatusOK, 60*time.Second, "after the initial round")
	initial := r.awaitRound(ctx, t, mark{}, copies, b, 60*time.Second, "the initial round")
	t.Logf("first start: round %s with %d object events %v", initial.reason, len(initial.events), initial.ops())
	return initial
}

// restartResumes restarts b (see restart), waits for /readyz and, up to
// within, for the first round begun after m, read by r in copies; it logs
// them and expects a resume round (REPLAY_REASON_RESUME).
func restartResumes(ctx context.Context, t *testing.T, b *binary, r *reader, copies int, m mark, within time.Duration) (*binary, roundStats) {
	t.Helper()
	restartedAt := time.Now()
	b2 := b.restart(t)
	took, _ := b2.awaitReadyz(ctx, t, http.StatusOK, 60*time.Second, "after the restart")
	rs := r.awaitRound(ctx, t, m, copies, b2, within, "the restart's first round")
	t.Logf("restart: /readyz 200 after %s; round %s (%d REPLAY_BEGIN, %d REPLAY_END copies) ended %s after the exec",
		took.Round(10*time.Millisecond), rs.reason, rs.begins, rs.ends, rs.endedAt.Sub(restartedAt).Round(10*time.Millisecond))
	if rs.reason != "RESUME" {
		t.Errorf("the restart's first round has reason %s, want RESUME", rs.reason)
	}
	return b2, rs
}

// kill sends SIGKILL and waits for the process to be gone.
func (b *binary) kill(t *testing.T) {
	t.Helper()
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-b.exited
}

// startKubestream runs the binary with args; addr is its --listen-address.
func startKubestream(t *testing.T, addr string, args []string) *binary {
	t.Helper()
	b := &binary{args: args, stderr: &testbin.SyncBuffer{}, exited: make(chan struct{}), addr: addr}
	b.cmd = exec.Command(binPath, args...)
	b.cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	b.cmd.Stderr = b.stderr
	b.cmd.Stdout = b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started kubestream %s", strings.Join(args, " "))
	go func() { b.err = b.cmd.Wait(); b.exitedAt = time.Now(); close(b.exited) }()
	t.Cleanup(func() {
		select {
		case <-b.exited:
		default:
			_ = b.cmd.Process.Kill()
			<-b.exited
		}
	})
	return b
}

// tail returns the last n lines of the binary's output.
func (b *binary) tail(n int) string {
	lines := strings.Split(strings.TrimRight(b.stderr.String(), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// alive fails the test when the binary has exited.
func (b *binary) alive(t *testing.T) {
	t.Helper()
	select {
	case <-b.exited:
		t.Fatalf("kubestream exited: %v\nkubestream output:\n%s", b.err, b.tail(80))
	default:
	}
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// get returns the status code and body of a GET on the binary's server; code
// 0 when it does not answer.
func (b *binary) get(path string) (int, string) {
	resp, err := httpClient.Get("http://" + b.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// metric returns the value of one unlabelled metric from /metrics, or "?".
func (b *binary) metric(name string) string {
	code, body := b.get("/metrics")
	if code != http.StatusOK {
		return "?"
	}
	for _, l := range strings.Split(body, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			return f[1]
		}
	}
	return "?"
}

// metricValue returns the value of one unlabelled metric from /metrics;
// ok is false when the binary does not answer or lacks the metric.
func (b *binary) metricValue(name string) (v float64, ok bool) {
	f, err := strconv.ParseFloat(b.metric(name), 64)
	return f, err == nil
}

// awaitReadyz polls /readyz until it answers want, and returns how long that
// took and the body.
func (b *binary) awaitReadyz(ctx context.Context, t *testing.T, want int, within time.Duration, what string) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	var code int
	var body string
	for time.Since(start) < within {
		b.alive(t)
		if code, body = b.get("/readyz"); code == want {
			return time.Since(start), body
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("%s: /readyz still %d %q after %s, want %d\nkubestream output:\n%s", what, code, body, within, want, b.tail(60))
	return 0, ""
}

// stop sends SIGTERM and expects a clean exit.
func (b *binary) stop(t *testing.T) {
	t.Helper()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.exited:
		if b.err != nil {
			t.Errorf("kubestream exited with %v after SIGTERM\nkubestream output:\n%s", b.err, b.tail(40))
		}
	case <-time.After(45 * time.Second):
		t.Errorf("kubestream did not stop within 45s of SIGTERM\nkubestream output:\n%s", b.tail(40))
	}
}

// ---------------------------------------------------------------------------
// The independent reader

// seenEvent is one applied record, for the report of a failing uid.
type seenEvent struct {
	stream string
	offset int64
	op     string
	rv     string
	fsu    bool // change.final_state_unknown
}

func (e seenEvent) String() string {
	s := fmt.Sprintf("%s@%d %s rv=%s", e.stream, e.offset, strings.TrimPrefix(e.op, "OPERATION_"), e.rv)
	if e.fsu {
		s += " final_state_unknown"
	}
	return s
}

// readEvent is one event as the reader applied it, in the order read.
type readEvent struct {
	at     time.Time // when the reader got it
	stream string
	offset int64
	ev     *kubestreamv1.Event
}

// reader consumes every partition of the event topics from the start
// and applies each event to a consumer.Store, streams keyed by topic/partition
// (or, from JetStream, to one stream: newNATSReader).
type reader struct {
	mu          sync.Mutex
	log         []readEvent            // every event applied, in the order read
	store       *consumer.Store        // the judge; kubestream runs as cluster judgedCluster
	history     map[string][]seenEvent // by uid
	keys        map[string]string      // uid -> key
	records     int
	lastRecord  time.Time
	rounds      map[string]bool // replay ids of REPLAY_END records applied
	initialEnds int             // REPLAY_END records of the initial round
	fsuDeletes  map[string]bool
	ids         map[string]int // event id -> records with it
	fetchErrs   int
	lastErr     error
}

// judgedCluster is the --cluster-name of every kubestream these tests run.
const judgedCluster = "faults"

func newReader(ctx context.Context, t *testing.T, brokers []string) *reader {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		// The event topics of the watched kinds; other kubestream.* topics
		// (the sink's own state) are not event streams.
		kgo.ConsumeRegex(), kgo.ConsumeTopics(`^kubestream\.(configmaps|pods|imagestorage)$`),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMaxAge(500*time.Millisecond), kgo.MetadataMinAge(100*time.Millisecond),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	r := emptyReader()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go r.run(rctx, t, cl, done)
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return r
}

func emptyReader() *reader {
	return &reader{store: consumer.NewStore(consumer.Options{}), history: map[string][]seenEvent{}, keys: map[string]string{},
		fsuDeletes: map[string]bool{}, ids: map[string]int{}, rounds: map[string]bool{}}
}

func (r *reader) run(ctx context.Context, t *testing.T, cl *kgo.Client, done chan struct{}) {
	defer close(done)
	for ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		r.mu.Lock()
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				r.fetchErrs++
				r.lastErr = fmt.Errorf("%s/%d: %w", topic, p, err)
			}
		})
		fetches.EachRecord(func(rec *kgo.Record) {
			r.records++
			r.lastRecord = time.Now()
			if rec.Value == nil {
				return // a tombstone (--kafka-tombstones)
			}
			ev := &kubestreamv1.Event{}
			if err := proto.Unmarshal(rec.Value, ev); err != nil {
				t.Errorf("record %s/%d@%d key %s: not a kubestream.v1.Event: %v", rec.Topic, rec.Partition, rec.Offset, rec.Key, err)
				return
			}
			r.apply(fmt.Sprintf("%s/%d", rec.Topic, rec.Partition), rec.Offset, ev)
		})
		r.mu.Unlock()
	}
}

// apply applies one event read from stream at offset; r.mu is held.
func (r *reader) apply(stream string, offset int64, ev *kubestreamv1.Event) {
	r.log = append(r.log, readEvent{at: time.Now(), stream: stream, offset: offset, ev: ev})
	r.store.Apply(stream, ev)
	switch ev.GetOperation() {
	case kubestreamv1.Operation_OPERATION_REPLAY_END:
		r.rounds[ev.GetReplay().GetReplayId()] = true
		if ev.GetReplay().GetReason() == kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL {
			r.initialEnds++
		}
		return
	case kubestreamv1.Operation_OPERATION_REPLAY_BEGIN:
		return
	}
	o := ev.GetObject()
	if o == nil || ev.GetImageStorage() != nil {
		return
	}
	r.ids[ev.GetId()]++
	se := seenEvent{stream: stream, offset: offset, op: ev.GetOperation().String(), rv: o.GetResourceVersion(),
		fsu: ev.GetChange().GetFinalStateUnknown()}
	r.history[o.GetUid()] = append(r.history[o.GetUid()], se)
	r.keys[o.GetUid()] = contract.Key(ev)
	if se.fsu && ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED {
		r.fsuDeletes[o.GetUid()] = true
	}
}

// counts returns the number of records read, of replay rounds whose
// REPLAY_END was applied (in at least one partition), and of REPLAY_END
// records of the initial round.
func (r *reader) counts() (records, rounds, initialEnds int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.records, len(r.rounds), r.initialEnds
}

// duplicates returns how many object events repeated an event id already
// read (retries after a lost acknowledgement; markers, copied to every
// partition, are not counted).
func (r *reader) duplicates() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.ids {
		n += c - 1
	}
	return n
}

// awaitInitialRound waits until the initial round's end marker was read
// from every partition it was written to (at least one).
func (r *reader) awaitInitialRound(ctx context.Context, t *testing.T, b *binary) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		b.alive(t)
		if _, _, n := r.counts(); n > 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("the initial round's REPLAY_END never arrived\nkubestream output:\n%s", b.tail(60))
}

// mark is a point in the reader's log.
type mark struct {
	n      int             // events read before it
	begun  map[string]bool // replay ids whose REPLAY_BEGIN was read before it
	at     time.Time
	rounds int // REPLAY_END records applied before it (counts' rounds)
}

// mark returns the current end of the log.
func (r *reader) mark() mark {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := mark{n: len(r.log), begun: map[string]bool{}, at: time.Now(), rounds: len(r.rounds)}
	for _, e := range r.log {
		if e.ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_BEGIN {
			m.begun[e.ev.GetReplay().GetReplayId()] = true
		}
	}
	return m
}

// isObjectEvent reports whether ev carries an object's state (CREATED,
// UPDATED, DELETED, SNAPSHOT), not a marker or an image-storage event.
func isObjectEvent(ev *kubestreamv1.Event) bool {
	switch ev.GetOperation() {
	case kubestreamv1.Operation_OPERATION_REPLAY_BEGIN, kubestreamv1.Operation_OPERATION_REPLAY_END:
		return false
	}
	return ev.GetObject() != nil && ev.GetImageStorage() == nil
}

func opName(ev *kubestreamv1.Event) string {
	s := strings.TrimPrefix(ev.GetOperation().String(), "OPERATION_")
	if ev.GetChange().GetFinalStateUnknown() {
		s += "(final_state_unknown)"
	}
	return s
}

func (e readEvent) String() string {
	o := e.ev.GetObject()
	return fmt.Sprintf("%s@%d %s %s uid=%s rv=%s by %s", e.stream, e.offset, opName(e.ev), contract.Key(e.ev), o.GetUid(), o.GetResourceVersion(), e.ev.GetInstance())
}

// roundStats is one replay round as the reader read it.
type roundStats struct {
	id, reason, instance string
	begins, ends         int       // copies of its markers read (one per Kafka partition)
	beganAt, endedAt     time.Time // when its first REPLAY_BEGIN and its last REPLAY_END copy were read
	// events are the object events read in a stream between the round's
	// REPLAY_BEGIN and REPLAY_END copies of that stream.
	events []readEvent
}

// ops counts the round's object events by operation.
func (rs roundStats) ops() map[string]int {
	out := map[string]int{}
	for _, e := range rs.events {
		out[opName(e.ev)]++
	}
	return out
}

// firstRoundAfter finds the first replay round begun after m (a replay id
// whose REPLAY_BEGIN was not read before m). complete is true once copies
// REPLAY_BEGIN copies were read and every stream that carried one also
// carried the REPLAY_END.
func (r *reader) firstRoundAfter(m mark, copies int) (rs roundStats, found, complete bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	open := map[string]bool{}
	for _, e := range r.log[m.n:] {
		ev := e.ev
		rep := ev.GetReplay()
		switch {
		case ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_BEGIN && !found && !m.begun[rep.GetReplayId()]:
			found = true
			rs.id, rs.reason, rs.instance, rs.beganAt = rep.GetReplayId(), strings.TrimPrefix(rep.GetReason().String(), "REPLAY_REASON_"), ev.GetInstance(), e.at
			fallthrough
		case found && ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_BEGIN && rep.GetReplayId() == rs.id:
			rs.begins++
			open[e.stream] = true
		case found && ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END && rep.GetReplayId() == rs.id:
			rs.ends++
			rs.endedAt = e.at
			delete(open, e.stream)
		case found && open[e.stream] && isObjectEvent(ev):
			rs.events = append(rs.events, e)
		}
	}
	return rs, found, found && rs.begins >= copies && len(open) == 0
}

// awaitRound waits until the first round begun after m is complete (see
// firstRoundAfter) and returns it.
func (r *reader) awaitRound(ctx context.Context, t *testing.T, m mark, copies int, b *binary, within time.Duration, what string) roundStats {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b.alive(t)
		rs, found, complete := r.firstRoundAfter(m, copies)
		if complete {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not complete after %s (found %v: round %q reason %s, %d of %d REPLAY_BEGIN copies, %d REPLAY_END copies, %d object events so far)\nkubestream output:\n%s",
				what, within, found, rs.id, rs.reason, rs.begins, copies, rs.ends, len(rs.events), b.tail(60))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// objectEventsSince returns the object events read after m.
func (r *reader) objectEventsSince(m mark) []readEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []readEvent
	for _, e := range r.log[m.n:] {
		if isObjectEvent(e.ev) {
			out = append(out, e)
		}
	}
	return out
}

// firstOf returns the first event published by instance read after m.
func (r *reader) firstOf(instance string, m mark) (readEvent, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.log[m.n:] {
		if e.ev.GetInstance() == instance {
			return e, true
		}
	}
	return readEvent{}, false
}

// eventCount returns how many events (object events, markers and
// image-storage events) the reader applied.
func (r *reader) eventCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.log)
}

// settledBefore returns, for every uid, the resourceVersion of its last
// object event read at or before t.
func (r *reader) settledBefore(t time.Time) map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for _, e := range r.log {
		if e.at.After(t) {
			break
		}
		if isObjectEvent(e.ev) {
			out[e.ev.GetObject().GetUid()] = e.ev.GetObject().GetResourceVersion()
		}
	}
	return out
}

// eventsOf describes the events read for uid.
func (r *reader) eventsOf(uid string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var sb strings.Builder
	for _, e := range r.history[uid] {
		fmt.Fprintf(&sb, " [%s]", e)
	}
	if sb.Len() == 0 {
		return " (none)"
	}
	return sb.String()
}

// logFinal logs the final counts on both sides in one quotable line.
func logFinal(t *testing.T, r *reader, v verdict, what string) {
	t.Helper()
	t.Logf("%s: consumer %d objects, apiserver %d, deleted %d, events %d", what, v.consumer, v.apiserver, v.deleted, r.eventCount())
}

// awaitSettledState waits until the binary's saved state holds want
// positions and kubestream_state_positions_written_total has not moved for
// 2 s, so a stop right after loses nothing that the next start must send.
func (b *binary) awaitSettledState(ctx context.Context, t *testing.T, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	last, stableSince := -1.0, time.Now()
	for {
		b.alive(t)
		n, _ := b.metricValue("kubestream_state_positions")
		w, ok := b.metricValue("kubestream_state_positions_written_total")
		if !ok || w != last {
			last, stableSince = w, time.Now()
		}
		if ok && int(n) == want && time.Since(stableSince) >= 2*time.Second {
			t.Logf("state settled: kubestream_state_positions %v, kubestream_state_positions_written_total %v, intents %s",
				n, w, b.metric("kubestream_state_intents_written_total"))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("state not settled after %s: kubestream_state_positions %v (want %d), written_total %v\nkubestream output:\n%s",
				within, n, want, w, b.tail(40))
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ---------------------------------------------------------------------------
// The apiserver's truth and the verdict

type truthObject struct {
	key string
	rv  string
}

// listTruth lists the watched kinds in ns, by uid.
func listTruth(ctx context.Context, client kubernetes.Interface, ns string) (map[string]truthObject, error) {
	out := map[string]truthObject{}
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, p := range pods.Items {
		out[string(p.UID)] = truthObject{key: "pods/" + ns + "/" + p.Name, rv: p.ResourceVersion}
	}
	cms, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, c := range cms.Items {
		out[string(c.UID)] = truthObject{key: "configmaps/" + ns + "/" + c.Name, rv: c.ResourceVersion}
	}
	return out, nil
}

type verdict struct {
	consumer, apiserver, deleted int // objects held, objects existing, seen uids gone with a DELETED
	seenGone                     int // seen uids that are gone
	missing                      []string
	extra                        []string
	staleRV                      []string // uid: consumer rv vs apiserver rv
	undeleted                    []string // seen, gone, and never DELETED
	dropped                      []string
}

// objectsMatch reports whether the consumer holds exactly the apiserver's
// objects at their resourceVersions.
func (v verdict) objectsMatch() bool {
	return len(v.missing)+len(v.extra)+len(v.staleRV) == 0
}

func (v verdict) ok() bool {
	return len(v.missing)+len(v.extra)+len(v.staleRV)+len(v.undeleted)+len(v.dropped) == 0
}

func (v verdict) counts() string {
	return fmt.Sprintf("consumer %d objects, apiserver %d objects, deleted %d", v.consumer, v.apiserver, v.deleted)
}

// judge compares the reader's state with the apiserver's truth.
func (r *reader) judge(truth map[string]truthObject) verdict {
	r.mu.Lock()
	defer r.mu.Unlock()
	held := r.store.Objects(judgedCluster)
	v := verdict{consumer: len(held), apiserver: len(truth), dropped: r.store.Dropped(judgedCluster)}
	for uid, o := range truth {
		h, ok := held[uid]
		switch {
		case !ok:
			v.missing = append(v.missing, uid)
		case h.ResourceVersion != o.rv:
			v.staleRV = append(v.staleRV, fmt.Sprintf("%s (%s): consumer rv %s, apiserver rv %s", uid, o.key, h.ResourceVersion, o.rv))
		}
	}
	for uid := range held {
		if _, ok := truth[uid]; !ok {
			v.extra = append(v.extra, uid)
		}
	}
	for uid := range r.history {
		if _, ok := truth[uid]; ok {
			continue
		}
		v.seenGone++
		if r.store.Deleted(judgedCluster, uid) {
			v.deleted++
		} else {
			v.undeleted = append(v.undeleted, uid)
		}
	}
	sort.Strings(v.missing)
	sort.Strings(v.extra)
	sort.Strings(v.staleRV)
	sort.Strings(v.undeleted)
	return v
}

// describe explains a failing verdict: counts, the failing uids and the
// events of a few of them.
func (r *reader) describe(v verdict, truth map[string]truthObject) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s; seen-and-gone %d; records read %d, replay rounds ended %d, fetch errors %d (last %v)\n",
		v.counts(), v.seenGone, r.records, len(r.rounds), r.fetchErrs, r.lastErr)
	list := func(what string, uids []string) {
		if len(uids) == 0 {
			return
		}
		fmt.Fprintf(&sb, "%s (%d):\n", what, len(uids))
		for i, uid := range uids {
			if i == 8 {
				fmt.Fprintf(&sb, "  ... %d more\n", len(uids)-i)
				break
			}
			id := strings.SplitN(uid, " ", 2)[0]
			key := r.keys[id]
			if key == "" {
				key = truth[id].key
			}
			fmt.Fprintf(&sb, "  %s %s apiserver rv %q; events:", uid, key, truth[id].rv)
			for _, e := range r.history[id] {
				fmt.Fprintf(&sb, " [%s]", e)
			}
			sb.WriteString("\n")
		}
	}
	list("missing from the consumer", v.missing)
	list("held by the consumer but gone", v.extra)
	list("stale resourceVersion", v.staleRV)
	list("gone without a DELETED", v.undeleted)
	list("removed by a REPLAY_END (Dropped)", v.dropped)
	return sb.String()
}

// quiescence says when the stream has settled.
type quiescence struct {
	// settle is how long the verdict must stay exact.
	settle time.Duration
	// rounds is how many replay rounds must end (REPLAY_END applied) while
	// it stays exact (0 with --resync 0).
	rounds int
	// quiet is how long no record may have arrived (0: not required; with
	// a resync the stream is never quiet).
	quiet time.Duration
}

// awaitExact waits, up to within, until the reader's state equals the
// apiserver's truth and stays so as q says; it fails the test with a report
// otherwise. It logs and returns the final verdict.
func awaitExact(ctx context.Context, t *testing.T, r *reader, client kubernetes.Interface, ns string, b *binary, within time.Duration, q quiescence) verdict {
	t.Helper()
	start := time.Now()
	var exactSince time.Time
	var endsAtExact int
	var v verdict
	var truth map[string]truthObject
	for {
		b.alive(t)
		var err error
		truth, err = listTruth(ctx, client, ns)
		if err != nil {
			t.Fatalf("list the apiserver's objects: %v", err)
		}
		v = r.judge(truth)
		_, ends, _ := r.counts()
		r.mu.Lock()
		quietFor := time.Since(r.lastRecord)
		r.mu.Unlock()
		// The objects match; deletes that never came and REPLAY_END
		// removals cannot be undone by waiting longer.
		if v.objectsMatch() {
			if exactSince.IsZero() {
				exactSince, endsAtExact = time.Now(), ends
			}
			if time.Since(exactSince) >= q.settle && ends-endsAtExact >= q.rounds && quietFor >= q.quiet {
				if !v.ok() {
					t.Fatalf("consumer holds the apiserver's objects but broke the contract on the way:\n%s\nkubestream output:\n%s",
						r.describe(v, truth), b.tail(60))
				}
				t.Logf("exact after %s: %s", time.Since(start).Round(100*time.Millisecond), v.counts())
				return v
			}
		} else {
			exactSince = time.Time{}
		}
		if time.Since(start) > within {
			t.Fatalf("consumer does not match the apiserver after %s:\n%s\nkubestream output:\n%s",
				within, r.describe(v, truth), b.tail(60))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%v while waiting for the consumer to match:\n%s", ctx.Err(), r.describe(v, truth))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ---------------------------------------------------------------------------
// Churn

// churner creates, updates, deletes and re-creates (same name, new uid)
// objects of one kind among a fixed pool of names, from a seeded source.
type churner struct {
	client kubernetes.Interface
	ns     string
	kind   string // "pods" or "configmaps"
	prefix string
	names  int
	rnd    *rand.Rand

	mu                                   sync.Mutex
	live                                 map[string]bool
	version                              int
	creates, updates, deletes, recreates int
}

func newChurner(client kubernetes.Interface, ns, kind, prefix string, names int, seed int64) *churner {
	return &churner{client: client, ns: ns, kind: kind, prefix: prefix, names: names, rnd: rand.New(rand.NewSource(seed)), live: map[string]bool{}}
}

func (c *churner) name(i int) string { return fmt.Sprintf("%s-%03d", c.prefix, i) }

func (c *churner) create(ctx context.Context, name string) error {
	c.version++
	v := strconv.Itoa(c.version)
	var err error
	switch c.kind {
	case "pods":
		_, err = c.client.CoreV1().Pods(c.ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns, Labels: map[string]string{"app": c.prefix}, Annotations: map[string]string{"v": v}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/pause:3"}}},
		}, metav1.CreateOptions{})
	default:
		_, err = c.client.CoreV1().ConfigMaps(c.ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns}, Data: map[string]string{"v": v},
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("create %s %s: %w", c.kind, name, err)
	}
	c.live[name] = true
	c.creates++
	return nil
}

func (c *churner) update(ctx context.Context, name string) error {
	c.version++
	var err error
	switch c.kind {
	case "pods":
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"v":"%d"}}}`, c.version)
		_, err = c.client.CoreV1().Pods(c.ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	default:
		patch := fmt.Sprintf(`{"data":{"v":"%d"}}`, c.version)
		_, err = c.client.CoreV1().ConfigMaps(c.ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	}
	if err != nil {
		return fmt.Errorf("update %s %s: %w", c.kind, name, err)
	}
	c.updates++
	return nil
}

func (c *churner) delete(ctx context.Context, name string) error {
	var err error
	switch c.kind {
	case "pods":
		// Pods without a node are deleted at once, whatever the grace period.
		err = c.client.CoreV1().Pods(c.ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	default:
		err = c.client.CoreV1().ConfigMaps(c.ns).Delete(ctx, name, metav1.DeleteOptions{})
	}
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", c.kind, name, err)
	}
	delete(c.live, name)
	c.deletes++
	return nil
}

// recreate deletes name and creates it again: same key, new uid. An
// unscheduled pod may linger for a moment, so AlreadyExists is retried.
func (c *churner) recreate(ctx context.Context, name string) error {
	if err := c.delete(ctx, name); err != nil {
		return err
	}
	for i := 0; ; i++ {
		err := c.create(ctx, name)
		if err == nil || !apierrors.IsAlreadyExists(err) || i == 50 {
			if err == nil {
				c.recreates++
			}
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// populate creates the first n names.
func (c *churner) populate(ctx context.Context, n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i < n; i++ {
		if err := c.create(ctx, c.name(i)); err != nil {
			return err
		}
	}
	return nil
}

// step makes one random change.
func (c *churner) step(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	name := c.name(c.rnd.Intn(c.names))
	if !c.live[name] {
		return c.create(ctx, name)
	}
	switch p := c.rnd.Intn(100); {
	case p < 55:
		return c.update(ctx, name)
	case p < 80:
		return c.delete(ctx, name)
	default:
		return c.recreate(ctx, name)
	}
}

// run makes rate changes per second until ctx ends or stop is closed.
func (c *churner) run(ctx context.Context, rate int, stop <-chan struct{}) error {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return nil
		case <-tick.C:
			if err := c.step(ctx); err != nil {
				return err
			}
		}
	}
}

func (c *churner) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%s: %d creates, %d updates, %d deletes, %d same-name re-creates, %d live", c.kind, c.creates, c.updates, c.deletes, c.recreates, len(c.live))
}

// churning is a churn (see churn) that the test ends with end; if the test
// ends first (a failure), its cleanup stops the churners.
type churning struct {
	cs    []*churner
	stop  chan struct{}
	wait  func() error
	ended bool
}

// startChurn churns cs at rate changes per second each.
func startChurn(ctx context.Context, t *testing.T, rate int, cs ...*churner) *churning {
	c := &churning{cs: cs, stop: make(chan struct{})}
	c.wait = churn(ctx, c.stop, rate, cs...)
	t.Cleanup(func() {
		if !c.ended {
			close(c.stop)
			_ = c.wait()
		}
	})
	return c
}

// end stops the churn, fails the test on its first error and logs what the
// churners did.
func (c *churning) end(t *testing.T) {
	t.Helper()
	close(c.stop)
	c.ended = true
	if err := c.wait(); err != nil {
		t.Fatal(err)
	}
	done := make([]string, len(c.cs))
	for i, ch := range c.cs {
		done[i] = ch.String()
	}
	t.Logf("churn: %s", strings.Join(done, "; "))
}

// churn runs churners concurrently until stop is closed; wait returns the
// first error.
func churn(ctx context.Context, stop <-chan struct{}, rate int, cs ...*churner) (wait func() error) {
	errs := make(chan error, len(cs))
	for _, c := range cs {
		go func() { errs <- c.run(ctx, rate, stop) }()
	}
	return func() error {
		var first error
		for range cs {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
}

// ---------------------------------------------------------------------------
// A TCP proxy whose connections can be cut

// proxy forwards TCP connections from a loopback port to target. Cut closes
// every connection and refuses new ones (the port is closed, so clients get
// "connection refused") until Heal listens on the same port again.
type proxy struct {
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
	cuts  int
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.forward(c)
			}()
		}
	}()
}

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *proxy) forward(client net.Conn) {
	defer client.Close()
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(server, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, server); done <- struct{}{} }()
	<-done
}

// cut closes the listener and every connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
		p.cuts++
	}
	for c := range p.conns {
		c.Close()
	}
}

// heal listens on the proxy's port again.
func (p *proxy) heal(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(ln)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("proxy: listen on %s again: %v", p.addr, err)
}

// ---------------------------------------------------------------------------
// Connections of kfake's brokers that can be killed

// connTracker is a kfake.ListenFn that remembers accepted connections so a
// test can close every client connection at once, as a broker restart would.
type connTracker struct {
	mu     sync.Mutex
	conns  map[net.Conn]bool
	kills  int
	killed int
}

func newConnTracker() *connTracker { return &connTracker{conns: map[net.Conn]bool{}} }

func (ct *connTracker) listen(network, address string) (net.Listener, error) {
	l, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &trackedListener{Listener: l, ct: ct}, nil
}

// killAll closes every open client connection and returns how many.
func (ct *connTracker) killAll() int {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	n := len(ct.conns)
	for c := range ct.conns {
		c.Close()
	}
	clear(ct.conns)
	ct.kills++
	ct.killed += n
	return n
}

type trackedListener struct {
	net.Listener
	ct *connTracker
}

func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.ct.mu.Lock()
	l.ct.conns[c] = true
	l.ct.mu.Unlock()
	return &trackedConn{Conn: c, ct: l.ct}, nil
}

type trackedConn struct {
	net.Conn
	ct   *connTracker
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.ct.mu.Lock()
		delete(c.ct.conns, c.Conn)
		c.ct.mu.Unlock()
	})
	return c.Conn.Close()
}

// grepCount counts the output lines matching re.
func grepCount(s string, re *regexp.Regexp) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if re.MatchString(l) {
			n++
		}
	}
	return n
}
