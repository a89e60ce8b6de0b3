package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubestream/kubestream/internal/controlplane"
	"github.com/kubestream/kubestream/internal/freeport"
	"github.com/kubestream/kubestream/internal/loadtest"
	"github.com/kubestream/kubestream/test/bench"
)

// kafkaPartitions is what kubestream creates its topics with
// (--kafka-topic-partitions): each replay marker has one copy per partition.
const kafkaPartitions = 6

type restartResults struct {
	Sink string `json:"sink"`
	Pods int    `json:"pods"`
	// CreateSeconds is how long creating the pods took.
	CreateSeconds float64      `json:"createSeconds"`
	Runs          []restartRun `json:"runs"`
}

// restartRun is one start of kubestream.
type restartRun struct {
	Name     string   `json:"name"`
	Instance string   `json:"instance"`
	Args     []string `json:"extraArgs,omitempty"`
	// ChangedWhileDown is what the harness changed before this start.
	ChangedWhileDown map[string]int `json:"changedWhileDown,omitempty"`
	// StartToEnd is from the exec to the last REPLAY_END copy of the first
	// round read back; StartToBegin to its first REPLAY_BEGIN copy.
	StartToEnd   float64    `json:"startToReplayEndSeconds"`
	StartToBegin float64    `json:"startToReplayBeginSeconds"`
	Round        roundStats `json:"round"`
	// Published is kubestream_events_published_total once the round was
	// read back: the events the broker acknowledged, markers included
	// (once each). On JetStream it can exceed what was read back: the
	// server drops a message whose id it saw within its duplicate window,
	// and acknowledges it.
	Published float64 `json:"published"`
	// CPUSeconds of the process from the exec to the round's end.
	CPUSeconds float64 `json:"cpuSecondsToReplayEnd"`
	// ListSeconds and LoadSeconds are the "took" of the process's
	// "Initial list synced" and "Loaded saved positions" log lines.
	ListSeconds float64 `json:"initialListSeconds"`
	LoadSeconds float64 `json:"loadStateSeconds"`
	// StatePositions is kubestream_state_positions once the state settled.
	StatePositions float64 `json:"statePositions"`
	// StateWritten is kubestream_state_positions_written_total then.
	StateWritten float64 `json:"statePositionsWritten"`
	// Consumer compares the contract's consumer with the apiserver after
	// the round: "match" or what differs.
	Consumer string `json:"consumer"`
	Stop     string `json:"stop"`
	// AfterKill is what the bus held after a SIGKILL of this run.
	AfterKill *afterKill `json:"afterKill,omitempty"`
	Log       string     `json:"log"`
}

// bus is where kubestream publishes during a scenario, and how the harness
// reads it back.
type bus struct {
	sink    string
	brokers []string
	args    []string
	log     *busLog
	copies  int
	nats    *natsReader
	natsURL string
	close   func()
}

func newBus(ctx context.Context, sink, dir string, topics []string) (*bus, error) {
	b := &bus{sink: sink, log: newBusLog()}
	switch sink {
	case "kafka":
		kc, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.DefaultNumPartitions(kafkaPartitions))
		if err != nil {
			return nil, fmt.Errorf("start kfake: %w", err)
		}
		brokers := kc.ListenAddrs()
		b.brokers = brokers
		b.copies = kafkaPartitions
		b.args = []string{"--sink", "kafka", "--kafka-brokers", strings.Join(brokers, ","), "--kafka-create-topics",
			"--kafka-topic-partitions", strconv.Itoa(kafkaPartitions)}
		rctx, cancel := context.WithCancel(ctx)
		if err := readKafka(rctx, brokers, topics, b.log); err != nil {
			cancel()
			kc.Close()
			return nil, err
		}
		b.close = func() { cancel(); kc.Close() }
	case "nats":
		port, err := freeport.Port()
		if err != nil {
			return nil, err
		}
		b.copies = 1
		b.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
		b.nats = &natsReader{l: b.log, stream: "KUBESTREAM"}
		b.args = []string{"--sink", "nats", "--nats-embedded-dir", filepath.Join(dir, "nats"), "--nats-embedded-port", strconv.Itoa(port)}
		b.close = func() { b.nats.detach() }
	}
	return b, nil
}

// attached is called once a kubestream process serves; the embedded NATS
// server lives in that process.
func (b *bus) attached(ctx context.Context) error {
	if b.nats == nil {
		return nil
	}
	return b.nats.attach(ctx, b.natsURL, 30*time.Second)
}

func (b *bus) detach() {
	if b.nats != nil {
		b.nats.detach()
	}
}

type restart struct {
	o       options
	client  kubernetes.Interface
	ns      string
	bus     *bus
	args    []string
	results *restartResults
	n       int
}

func restartScenario(ctx context.Context, o options, sink string) (restartResults, error) {
	res := restartResults{Sink: sink, Pods: o.pods}
	logf("restart-%s: starting etcd and kube-apiserver", sink)
	const ns = "resume"
	cp, client, err := startControlPlane(ctx, ns)
	if err != nil {
		return res, err
	}
	defer cp.Stop()
	r := &restart{o: o, client: client, ns: ns, results: &res}
	logf("restart-%s: creating %d pods with %d writers", sink, o.pods, o.writers)
	t0 := time.Now()
	names := make([]string, o.pods)
	for i := range names {
		names[i] = fmt.Sprintf("pod-%05d", i)
	}
	if err := r.parallel(ctx, names, r.create); err != nil {
		return res, err
	}
	res.CreateSeconds = time.Since(t0).Seconds()
	logf("restart-%s: created %d pods in %.1f s", sink, o.pods, res.CreateSeconds)

	dir := filepath.Join(o.logDir, "restart-"+sink)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	r.bus, err = newBus(ctx, sink, dir, []string{"kubestream.pods"})
	if err != nil {
		return res, err
	}
	defer r.bus.close()
	r.args = append([]string{"run", "--kubeconfig", cp.Kubeconfig, "--kinds", "pods", "--namespace", r.ns,
		"--resync", "0", "--listen-address", "127.0.0.1:0"}, r.bus.args...)

	// 1. First start: nothing saved, a full snapshot; the state is written.
	p, err := r.start(ctx, "first start (nothing saved)", nil, nil)
	if err != nil {
		return res, err
	}
	if err := r.stop(p, "SIGTERM"); err != nil {
		return res, err
	}

	// 2. 1 % changed while down.
	changed, err := r.change(ctx, 0, "new")
	if err != nil {
		return res, err
	}
	if p, err = r.start(ctx, "restart, 1 % changed while down", nil, changed); err != nil {
		return res, err
	}
	if err := r.stop(p, "SIGTERM"); err != nil {
		return res, err
	}

	// 3. Nothing changed.
	if p, err = r.start(ctx, "restart, nothing changed", nil, nil); err != nil {
		return res, err
	}
	if err := r.stop(p, "SIGTERM"); err != nil {
		return res, err
	}

	// 4. Resume off: a full snapshot again.
	if p, err = r.start(ctx, "restart with --resume=false", []string{"--resume=false"}, nil); err != nil {
		return res, err
	}
	if err := r.stop(p, "SIGTERM"); err != nil {
		return res, err
	}

	// 5. SIGKILL right after live updates it published, so the state lags
	// them; then 1 % changed while down.
	if p, err = r.start(ctx, "restart, nothing changed (then live updates and SIGKILL)", nil, nil); err != nil {
		return res, err
	}
	burst := names[200:300]
	if changed, err = r.burstAndKill(ctx, p, burst, 1, 0, 100, "new2"); err != nil {
		return res, err
	}
	if p, err = r.start(ctx, "restart after SIGKILL, 1 % changed while down", nil, changed); err != nil {
		return res, err
	}

	// 6. The same, but SIGKILL 1.5 s after the live updates were read
	// back, longer than the state's flush interval (1 s).
	if changed, err = r.burstAndKill(ctx, p, burst, 2, 1500*time.Millisecond, 300, "new3"); err != nil {
		return res, err
	}
	if p, err = r.start(ctx, "restart after a SIGKILL 1.5 s after the live updates, 1 % changed while down", nil, changed); err != nil {
		return res, err
	}
	if err := r.stop(p, "SIGTERM"); err != nil {
		return res, err
	}
	if err := r.bus.log.failure(); err != nil {
		return res, err
	}
	return res, nil
}

// startControlPlane starts etcd and kube-apiserver, a client of it that
// speaks protobuf, and namespace ns. The caller stops the control plane.
func startControlPlane(ctx context.Context, ns string) (*controlplane.ControlPlane, kubernetes.Interface, error) {
	cp, err := controlplane.Start(ctx, controlplane.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("start control plane: %w", err)
	}
	cfg := cp.RestConfig()
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(cfg)
	if err == nil {
		if _, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			err = fmt.Errorf("create namespace: %w", err)
		}
	}
	if err != nil {
		cp.Stop()
		return nil, nil, err
	}
	return cp, client, nil
}

func (r *restart) last() *restartRun { return &r.results.Runs[len(r.results.Runs)-1] }

// start runs kubestream with the scenario's flags and extra, waits for its
// first round to be read back, checks the consumer against the apiserver
// and, with resume on, waits until the state is written.
func (r *restart) start(ctx context.Context, name string, extra []string, changed map[string]int) (*proc, error) {
	r.n++
	inst := fmt.Sprintf("%s-run%d", r.bus.sink, r.n)
	run := restartRun{Name: name, Instance: inst, Args: extra, ChangedWhileDown: changed}
	run.Log = filepath.Join(r.o.logDir, "restart-"+r.bus.sink, fmt.Sprintf("run%d.log", r.n))
	args := append(append(append([]string{}, r.args...), "--instance", inst), extra...)
	logf("restart-%s: start %d: %s", r.bus.sink, r.n, name)
	p, err := startProc(inst, r.o.binary, args, run.Log)
	if err != nil {
		return nil, err
	}
	if err := r.bus.attached(ctx); err != nil {
		p.kill()
		return nil, err
	}
	var cpu float64
	err = waitFor(ctx, 3*time.Minute, "the first round of "+inst, func() bool {
		rs, done := r.bus.log.round(inst, r.bus.copies)
		if done {
			cpu, _ = p.cpuSeconds()
			run.Published = finite(p.metric("kubestream_events_published_total"))
			run.Round = rs
		}
		return done
	}, p)
	if err != nil {
		p.kill()
		return nil, err
	}
	run.CPUSeconds = cpu
	run.StartToEnd = since(p.started, run.Round.EndAt)
	run.StartToBegin = since(p.started, run.Round.BeginAt)
	run.ListSeconds = p.took(`"Initial list synced"`)
	run.LoadSeconds = p.took(`"Loaded saved positions"`)
	// Live events of other objects would still be arriving: none here.
	if err := loadtest.Sleep(ctx, 500*time.Millisecond); err != nil {
		return nil, err
	}
	run.Round, _ = r.bus.log.round(inst, r.bus.copies)
	if run.Consumer, err = r.compare(ctx); err != nil {
		p.kill()
		return nil, err
	}
	resume := !strings.Contains(strings.Join(extra, " "), "--resume=false")
	if resume {
		pods, err := r.client.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			p.kill()
			return nil, err
		}
		if err := p.waitStateSettled(ctx, len(pods.Items), 2500*time.Millisecond, 2*time.Minute); err != nil {
			p.kill()
			return nil, err
		}
		run.StatePositions = finite(p.metric("kubestream_state_positions"))
		run.StateWritten = finite(p.metric("kubestream_state_positions_written_total"))
	}
	logf("restart-%s: start %d: round %s with %d object events %v in %.2f s (CPU %.2f s); consumer: %s",
		r.bus.sink, r.n, run.Round.Reason, run.Round.Events, run.Round.Ops, run.StartToEnd, run.CPUSeconds, run.Consumer)
	r.results.Runs = append(r.results.Runs, run)
	return p, nil
}

func (r *restart) stop(p *proc, how string) error {
	r.bus.detach()
	if err := p.term(time.Minute); err != nil {
		return err
	}
	r.last().Stop = how
	return nil
}

// compare checks the contract's consumer against the apiserver's pods.
func (r *restart) compare(ctx context.Context) (string, error) {
	pods, err := r.client.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	want := map[string]string{}
	for _, p := range pods.Items {
		want[string(p.UID)] = p.ResourceVersion
	}
	return diffObjects(want, r.bus.log.objects()), nil
}

// diffObjects describes how got (uid -> resourceVersion) differs from want.
func diffObjects(want, got map[string]string) string {
	var missing, extra, stale int
	for uid, rv := range want {
		g, ok := got[uid]
		switch {
		case !ok:
			missing++
		case g != rv:
			stale++
		}
	}
	for uid := range got {
		if _, ok := want[uid]; !ok {
			extra++
		}
	}
	if missing+extra+stale == 0 {
		return fmt.Sprintf("match (%d objects)", len(want))
	}
	return fmt.Sprintf("MISMATCH: %d objects, %d missing, %d gone but held, %d at an older resourceVersion", len(want), missing, extra, stale)
}

// change makes 1 % of the pods differ: pods [from, from+0.5%) get an
// annotation, the next 0.3 % are deleted, and 0.2 % new ones are created.
func (r *restart) change(ctx context.Context, from int, newPrefix string) (map[string]int, error) {
	n := r.o.pods / 100
	upd, del, add := n/2, n*3/10, n-n/2-n*3/10
	var updates, deletes, creates []string
	for i := 0; i < upd; i++ {
		updates = append(updates, fmt.Sprintf("pod-%05d", from+i))
	}
	for i := 0; i < del; i++ {
		deletes = append(deletes, fmt.Sprintf("pod-%05d", from+upd+i))
	}
	for i := 0; i < add; i++ {
		creates = append(creates, fmt.Sprintf("%s-%05d", newPrefix, i))
	}
	logf("restart-%s: while down: %d updated, %d deleted, %d created", r.bus.sink, upd, del, add)
	if err := r.parallel(ctx, updates, r.annotate); err != nil {
		return nil, err
	}
	if err := r.parallel(ctx, deletes, r.delete); err != nil {
		return nil, err
	}
	if err := r.parallel(ctx, creates, r.create); err != nil {
		return nil, err
	}
	return map[string]int{"UPDATED": upd, "DELETED": del, "CREATED": add}, nil
}

// burstAndKill updates pods while p runs, waits until every update was read
// back and then for wait, SIGKILLs p and changes 1 % of the pods from the
// from'th on (new ones named newPrefix-N).
func (r *restart) burstAndKill(ctx context.Context, p *proc, pods []string, value int, wait time.Duration, from int, newPrefix string) (map[string]int, error) {
	live, err := r.burst(ctx, p, pods, value)
	if err != nil {
		return nil, err
	}
	if err := loadtest.Sleep(ctx, wait); err != nil {
		return nil, err
	}
	written := p.metric("kubestream_state_positions_written_total") - r.last().StateWritten
	r.bus.detach()
	p.kill()
	r.last().Stop = fmt.Sprintf("SIGKILL %s after its %d live updates were read back (%.0f positions saved since the round)", secs(wait.Seconds()), len(pods), written)
	if wait == 0 {
		r.last().Stop = fmt.Sprintf("SIGKILL right after its %d live updates were read back (%.0f positions saved since the round)", len(pods), written)
	}
	ak, err := r.bus.inspectAfterKill(ctx, filepath.Join(r.o.logDir, "restart-"+r.bus.sink), r.ns, live)
	if err != nil {
		return nil, fmt.Errorf("inspect the bus after SIGKILL: %w", err)
	}
	r.last().AfterKill = &ak
	logf("restart-%s: after SIGKILL: %d of %d live updates saved at their resourceVersion; stream last sequence %d, read %d",
		r.bus.sink, ak.SavedAtLive, ak.LiveUpdates, ak.StreamLastSeq, ak.ReadSeq)
	changed, err := r.change(ctx, from, newPrefix)
	if err != nil {
		return nil, err
	}
	changed["liveUpdatesBeforeKill"] = len(pods)
	return changed, nil
}

// burst updates pods while p runs (label burst=value) and waits until every
// update was read back. It returns each pod's new resourceVersion.
func (r *restart) burst(ctx context.Context, p *proc, pods []string, value int) (map[string]string, error) {
	var mu sync.Mutex
	var want []string
	rvs := map[string]string{}
	patch := []byte(fmt.Sprintf(`{"metadata":{"labels":{"burst":"%d"}}}`, value))
	err := r.parallel(ctx, pods, func(ctx context.Context, name string) error {
		obj, err := r.client.CoreV1().Pods(r.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil {
			return err
		}
		mu.Lock()
		want = append(want, name+"@"+obj.ResourceVersion)
		rvs[name] = obj.ResourceVersion
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(want)
	return rvs, waitFor(ctx, time.Minute, "the live updates", func() bool {
		seen := r.bus.log.versions()
		for _, k := range want {
			if !seen[k] {
				return false
			}
		}
		return true
	}, p)
}

func (r *restart) create(ctx context.Context, name string) error {
	_, err := r.client.CoreV1().Pods(r.ns).Create(ctx, bench.Pod(r.ns, name), metav1.CreateOptions{})
	return err
}

func (r *restart) annotate(ctx context.Context, name string) error {
	_, err := r.client.CoreV1().Pods(r.ns).Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"bench.kubestream.io/changed-while-down":"1"}}}`), metav1.PatchOptions{})
	return err
}

func (r *restart) delete(ctx context.Context, name string) error {
	return r.client.CoreV1().Pods(r.ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
}

// parallel runs fn for every name from --writers goroutines; the first error
// ends it.
func (r *restart) parallel(ctx context.Context, names []string, fn func(context.Context, string) error) error {
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		mu      sync.Mutex
		failure error
	)
	for w := 0; w < min(r.o.writers, len(names)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(names) || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, names[i]); err != nil {
					mu.Lock()
					if failure == nil {
						failure = fmt.Errorf("%s: %w", names[i], err)
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if failure != nil {
		return failure
	}
	return ctx.Err()
}

// finite is x, or 0 for NaN (a metric that could not be read): JSON has no
// NaN.
func finite(x float64) float64 {
	if math.IsNaN(x) {
		return 0
	}
	return x
}
