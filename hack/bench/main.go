// Command bench measures kubestream under load against a real apiserver: CPU
// per 1000 events, resident memory per cached pod and write-to-event lag.
//
//	go run ./hack/bench                       # 2000 pods at 500 writes/s
//	go run ./hack/bench --pods 5000 --rate 1000 --out bench.json --profile-dir /tmp/prof
//
// It starts etcd and kube-apiserver (internal/controlplane), builds
// kubestream and runs it with --sink stdout --kinds pods --resync 0, reading
// its events from a pipe. Then, in order:
//
//  1. idle: after the initial list, the baseline RSS and CPU.
//  2. cache: create --pods pods at --rate and keep them; once every one was
//     seen, RSS and Go heap beyond the baseline, per pod. Then delete them.
//  3. churn: --pods pods, each created, updated twice (an annotation, then a
//     label) and deleted, at --rate writes/s from --workers goroutines. CPU
//     seconds of the kubestream process per 1000 events, and the lag from the
//     moment each write returned to the moment its event was read from
//     kubestream's stdout, matched by pod name, operation and
//     resourceVersion (deletes by name).
//
// The figures are reported, never asserted: they depend on the machine, and
// the apiserver and etcd share its cores.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubestream/kubestream/hack/internal/benchproc"
	"github.com/kubestream/kubestream/internal/controlplane"
	"github.com/kubestream/kubestream/test/bench"
)

const namespace = "bench"

type options struct {
	pods       int
	rate       float64
	workers    int
	settle     time.Duration
	binary     string
	out        string
	profileDir string
	extraArgs  string
	sink       string
}

func main() {
	var o options
	flag.IntVar(&o.pods, "pods", 2000, "pods per phase: kept in the cache phase, created, updated twice and deleted in the churn phase")
	flag.Float64Var(&o.rate, "rate", 500, "target writes per second to the apiserver")
	flag.IntVar(&o.workers, "workers", 32, "goroutines writing to the apiserver")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "pause before each memory reading, so the process is at rest")
	flag.StringVar(&o.binary, "binary", "", "kubestream binary to measure (default: build ./cmd/kubestream)")
	flag.StringVar(&o.out, "out", "", "also write the results as JSON to this file")
	flag.StringVar(&o.profileDir, "profile-dir", "", "save kubestream's CPU profile of the churn phase and heap profile of the cache phase here (go tool pprof)")
	flag.StringVar(&o.extraArgs, "kubestream-args", "", "extra arguments for kubestream run, space-separated")
	flag.StringVar(&o.sink, "sink", "stdout", "stdout: read kubestream's JSON lines; nats: kubestream publishes to its embedded NATS server (JetStream, file storage, acked); kafka: kubestream publishes to an in-process Kafka (kfake, 3 brokers, acks=all); for nats and kafka `kubestream tail --output json` reads the events back")
	flag.Parse()
	if o.sink != "stdout" && o.sink != "nats" && o.sink != "kafka" {
		fmt.Fprintln(os.Stderr, "bench: --sink is stdout, nats or kafka")
		os.Exit(2)
	}
	if o.pods < 1 || o.rate <= 0 || o.workers < 1 {
		fmt.Fprintln(os.Stderr, "bench: --pods, --rate and --workers must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	res, err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	res.print(os.Stdout)
	if o.out != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(o.out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "bench: write %s: %v\n", o.out, err)
			os.Exit(1)
		}
	}
}

// results is everything the run measured.
type results struct {
	Machine  benchproc.Machine `json:"machine"`
	Settings settings          `json:"settings"`
	Idle     idle              `json:"idle"`
	Cache    memory            `json:"cache"`
	Phases   []phase           `json:"phases"`
	// ExitCode of kubestream after SIGTERM at the end (its "Stopped" line
	// must say leftUnpublished=0, or the run fails).
	ExitCode int `json:"exitCode"`
	// Log is kubestream's stderr.
	Log string `json:"log"`
}

type settings struct {
	Pods int `json:"pods"`
	// PodBytes is the protobuf size of one created pod as the apiserver
	// returned it, managed fields excluded (kubestream strips them).
	PodBytes int      `json:"podProtobufBytes"`
	Rate     float64  `json:"targetWritesPerSecond"`
	Workers  int      `json:"workers"`
	Args     []string `json:"kubestreamArgs"`
}

type idle struct {
	RSSBytes       int64   `json:"rssBytes"`
	HeapInuseBytes int64   `json:"heapInuseBytes"`
	CPUPerSecond   float64 `json:"cpuSecondsPerSecond"`
}

type memory struct {
	Pods              int     `json:"pods"`
	RSSBytes          int64   `json:"rssBytes"`
	RSSPerPod         float64 `json:"rssBytesPerPod"`
	HeapInuseBytes    int64   `json:"heapInuseBytes"`
	HeapPerPod        float64 `json:"heapInuseBytesPerPod"`
	HeapAfterGCPerPod float64 `json:"heapInuseBytesPerPodAfterGC"`
}

type phase struct {
	Name            string  `json:"name"`
	Writes          int     `json:"writes"`
	WriteErrors     int     `json:"writeErrors"`
	WriteSeconds    float64 `json:"writeSeconds"`
	WritesPerSecond float64 `json:"writesPerSecond"`
	EventsExpected  int     `json:"eventsExpected"`
	EventsDelivered int     `json:"eventsDelivered"`
	Coalesced       int64   `json:"coalesced"`
	Unmatched       int     `json:"writesWithoutEvent"`
	CPUSeconds      float64 `json:"cpuSeconds"`
	CPUPer1000      float64 `json:"cpuSecondsPer1000Events"`
	CPUPer1000Write float64 `json:"cpuSecondsPer1000Writes"`
	LagP50          float64 `json:"lagP50Seconds"`
	LagP99          float64 `json:"lagP99Seconds"`
	LagMax          float64 `json:"lagMaxSeconds"`
	// The lag from the moment each write was sent: an upper bound that
	// includes the apiserver's own time.
	LagFromSendP50 float64 `json:"lagFromSendP50Seconds"`
	LagFromSendP99 float64 `json:"lagFromSendP99Seconds"`
	// EarlyEvents were read before their write's response arrived (lag 0).
	EarlyEvents int `json:"earlyEvents"`
}

func run(ctx context.Context, o options) (*results, error) {
	res := &results{Machine: benchproc.DescribeMachine(), Settings: settings{Pods: o.pods, Rate: o.rate, Workers: o.workers}}
	work, err := os.MkdirTemp("", "kubestream-bench-")
	if err != nil {
		return nil, err
	}
	if o.binary == "" {
		if o.binary, err = benchproc.GoBuild(work, "kubestream", "./cmd/kubestream"); err != nil {
			return nil, err
		}
		defer os.Remove(o.binary)
	}

	fmt.Fprintln(os.Stderr, "bench: starting etcd and kube-apiserver")
	cp, err := controlplane.Start(ctx, controlplane.Options{})
	if err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	defer cp.Stop()
	cfg := cp.RestConfig()
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create namespace: %w", err)
	}

	args := []string{"run", "--kubeconfig", cp.Kubeconfig, "--sink", o.sink, "--kinds", "pods", "--resync", "0", "--listen-address", "127.0.0.1:0"}
	var readerArgs []string
	if o.sink == "nats" {
		natsDir := filepath.Join(work, "nats")
		port, err := benchproc.FreePort()
		if err != nil {
			return nil, err
		}
		args = append(args, "--nats-embedded-dir", natsDir, "--nats-embedded-port", strconv.Itoa(port))
		readerArgs = []string{"tail", "--output", "json", "--nats-embedded-dir", natsDir}
	}
	if o.sink == "kafka" {
		// The broker runs in this process, so its CPU is not counted as
		// kubestream's.
		kc, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.DefaultNumPartitions(6))
		if err != nil {
			return nil, fmt.Errorf("start kfake: %w", err)
		}
		defer kc.Close()
		brokers := strings.Join(kc.ListenAddrs(), ",")
		args = append(args, "--kafka-brokers", brokers, "--kafka-create-topics")
		readerArgs = []string{"tail", "--output", "json", "--kafka-brokers", brokers, "--kafka-topic", "kubestream.pods"}
	}
	args = append(args, strings.Fields(o.extraArgs)...)
	res.Settings.Args = args[1:]
	res.Log = filepath.Join(work, "kubestream.log")
	ks, err := startKubestream(o.binary, args, readerArgs, res.Log)
	if err != nil {
		return nil, err
	}
	defer ks.kill()
	h := &harness{o: o, client: client, ks: ks}

	fmt.Fprintln(os.Stderr, "bench: waiting for kubestream's initial list")
	if err := h.waitFor(ctx, 60*time.Second, "the initial list", func() bool { return ks.rec.replayEnded() }); err != nil {
		return nil, err
	}
	if err := h.measureIdle(ctx, &res.Idle); err != nil {
		return nil, err
	}
	if res.Settings.PodBytes, err = h.podSize(ctx); err != nil {
		return nil, err
	}

	fmt.Fprintf(os.Stderr, "bench: cache phase: creating %d pods\n", o.pods)
	create, err := h.phase(ctx, "cache-create", []string{opCreate})
	if err != nil {
		return nil, err
	}
	if err := h.measureCache(ctx, res); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "bench: cache phase: deleting %d pods\n", o.pods)
	del, err := h.phase(ctx, "cache-delete", []string{opDelete})
	if err != nil {
		return nil, err
	}

	fmt.Fprintf(os.Stderr, "bench: churn phase: %d pods, each created, updated twice and deleted\n", o.pods)
	var churn phase
	profiled := make(chan error, 1)
	if o.profileDir != "" {
		seconds := int(math.Ceil(4*float64(o.pods)/o.rate)) + 2
		go func() {
			profiled <- h.ks.saveProfile(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), filepath.Join(o.profileDir, "cpu-churn.pprof"))
		}()
	}
	churn, err = h.phase(ctx, "churn", []string{opCreate, opAnnotate, opRelabel, opDelete})
	if err != nil {
		return nil, err
	}
	if o.profileDir != "" {
		if err := <-profiled; err != nil {
			return nil, err
		}
	}
	res.Phases = []phase{churn, create, del}

	code, err := ks.stop(30 * time.Second)
	if err != nil {
		return nil, err
	}
	res.ExitCode = code
	return res, nil
}

// The operations of the load generator. Each is one write.
const (
	opCreate   = "CREATED"
	opAnnotate = "UPDATED/annotation"
	opRelabel  = "UPDATED/label"
	opDelete   = "DELETED"
)

type harness struct {
	o      options
	client kubernetes.Interface
	ks     *kubestream
}

// phase runs ops on --pods pods named after the phase, each pod's ops in
// order, paced to --rate writes per second over all workers, then waits until
// the event of every successful write was read, or a minute passed.
func (h *harness) phase(ctx context.Context, name string, ops []string) (phase, error) {
	prefix := strings.SplitN(name, "-", 2)[0]
	ph := phase{Name: name}
	cpu0, err := h.ks.cpuSeconds()
	if err != nil {
		return ph, err
	}
	coalesced0 := h.ks.metric("kubestream_changes_coalesced_total")
	delivered0 := h.ks.rec.delivered(prefix)

	p := &pacer{start: time.Now(), interval: time.Duration(float64(time.Second) / h.o.rate)}
	var (
		next     atomic.Int64
		mu       sync.Mutex
		writes   []write
		failures int
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := 0; w < h.o.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= h.o.pods || ctx.Err() != nil {
					return
				}
				pod := fmt.Sprintf("%s-%05d", prefix, i)
				for _, op := range ops {
					if err := p.wait(ctx); err != nil {
						return
					}
					wr, err := h.write(ctx, op, pod)
					mu.Lock()
					if err != nil {
						failures++
						if failures <= 5 {
							fmt.Fprintf(os.Stderr, "bench: %s %s: %v\n", op, pod, err)
						}
					} else {
						writes = append(writes, wr)
					}
					mu.Unlock()
					if err != nil {
						break // the pod's later writes would fail too
					}
				}
			}
		}()
	}
	wg.Wait()
	ph.WriteSeconds = time.Since(start).Seconds()
	if err := ctx.Err(); err != nil {
		return ph, err
	}
	ph.Writes, ph.WriteErrors = len(writes), failures
	ph.WritesPerSecond = float64(len(writes)) / ph.WriteSeconds
	// A delete is two watch events: the apiserver first sets
	// deletionTimestamp (an update), then removes the pod.
	for _, wr := range writes {
		ph.EventsExpected++
		if strings.HasSuffix(wr.key, "|"+opDelete) {
			ph.EventsExpected++
		}
	}

	// Every successful write makes one event unless kubestream coalesced it
	// into a later one of the same pod; the last write of each pod is never
	// coalesced away, so waiting for those is waiting for the phase.
	last := map[string]write{}
	for _, wr := range writes {
		last[wr.pod] = wr
	}
	err = h.waitFor(ctx, time.Minute, "the events of "+name, func() bool {
		for pod, wr := range last {
			if !h.ks.rec.received(wr.key) {
				return false
			}
			delete(last, pod)
		}
		return true
	})
	if err != nil {
		// Say which events are missing and what kubestream thinks of its
		// queue, so a lost event can be told from a slow broker.
		var missing []string
		for _, wr := range last {
			missing = append(missing, wr.key)
		}
		slices.Sort(missing)
		sample := missing[:min(len(missing), 10)]
		var m []string
		for _, name := range []string{"kubestream_events_published_total", "kubestream_pending_changes", "kubestream_pending_objects",
			"kubestream_failing_changes", "kubestream_publish_retries_total", "kubestream_events_lost_total"} {
			m = append(m, fmt.Sprintf("%s=%v", strings.TrimPrefix(name, "kubestream_"), h.ks.metric(name)))
		}
		return ph, fmt.Errorf("%w: %d pods without their last event (%s); kubestream: %s", err, len(missing), strings.Join(sample, " "), strings.Join(m, " "))
	}
	cpu1, err := h.ks.cpuSeconds()
	if err != nil {
		return ph, err
	}
	ph.CPUSeconds = cpu1 - cpu0
	ph.EventsDelivered = h.ks.rec.delivered(prefix) - delivered0
	ph.Coalesced = int64(h.ks.metric("kubestream_changes_coalesced_total") - coalesced0)
	if ph.EventsDelivered > 0 {
		ph.CPUPer1000 = ph.CPUSeconds / float64(ph.EventsDelivered) * 1000
	}
	if ph.Writes > 0 {
		ph.CPUPer1000Write = ph.CPUSeconds / float64(ph.Writes) * 1000
	}
	var lags, fromSend []float64
	for _, wr := range writes {
		got, ok := h.ks.rec.receivedAt(wr.key)
		if !ok {
			ph.Unmatched++
			continue
		}
		// An event can be read before the client saw the write's response.
		lag := got.Sub(wr.done).Seconds()
		if lag < 0 {
			ph.EarlyEvents++
		}
		lags = append(lags, max(0, lag))
		fromSend = append(fromSend, got.Sub(wr.sent).Seconds())
	}
	slices.Sort(lags)
	slices.Sort(fromSend)
	ph.LagFromSendP50, ph.LagFromSendP99 = quantile(fromSend, 0.50), quantile(fromSend, 0.99)
	ph.LagP50, ph.LagP99 = quantile(lags, 0.50), quantile(lags, 0.99)
	if len(lags) > 0 {
		ph.LagMax = lags[len(lags)-1]
	}
	return ph, nil
}

// write is one acknowledged write: the event it must produce and when the
// apiserver's answer arrived.
type write struct {
	pod  string
	key  string
	sent time.Time
	done time.Time
}

func (h *harness) write(ctx context.Context, op, name string) (write, error) {
	pods := h.client.CoreV1().Pods(namespace)
	var (
		obj  *corev1.Pod
		err  error
		sent = time.Now()
	)
	switch op {
	case opCreate:
		obj, err = pods.Create(ctx, bench.Pod(namespace, name), metav1.CreateOptions{})
	case opAnnotate:
		obj, err = pods.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"bench.kubestream.io/step":"1"}}}`), metav1.PatchOptions{})
	case opRelabel:
		obj, err = pods.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"labels":{"version":"v2"}}}`), metav1.PatchOptions{})
	case opDelete:
		// Unscheduled pods are deleted at once; the event's resourceVersion
		// is the deletion's, which the client never sees: match by name.
		err = pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		return write{pod: name, key: eventKey(name, opDelete, ""), sent: sent, done: time.Now()}, err
	}
	done := time.Now()
	if err != nil {
		return write{}, err
	}
	return write{pod: name, key: eventKey(name, strings.SplitN(op, "/", 2)[0], obj.ResourceVersion), sent: sent, done: done}, nil
}

func eventKey(pod, op, rv string) string {
	if op == opDelete {
		return pod + "|" + op
	}
	return pod + "|" + op + "|" + rv
}

// waitFor polls cond until it holds, kubestream exits, or timeout passes.
func (h *harness) waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-h.ks.exited:
			return fmt.Errorf("kubestream exited while waiting for %s; log: %s", what, h.ks.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not arrive within %s; log: %s", what, timeout, h.ks.logPath)
		}
	}
	return nil
}

func (h *harness) measureIdle(ctx context.Context, out *idle) error {
	cpu0, err := h.ks.cpuSeconds()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := benchproc.Sleep(ctx, h.o.settle); err != nil {
		return err
	}
	cpu1, err := h.ks.cpuSeconds()
	if err != nil {
		return err
	}
	out.CPUPerSecond = (cpu1 - cpu0) / time.Since(t0).Seconds()
	if out.RSSBytes, err = h.ks.rss(); err != nil {
		return err
	}
	out.HeapInuseBytes = int64(h.ks.metric("go_memstats_heap_inuse_bytes"))
	return nil
}

// measureCache reads memory with --pods pods cached: RSS and heap as they
// are, then the heap after a forced collection (the heap profile endpoint
// collects first).
func (h *harness) measureCache(ctx context.Context, res *results) error {
	if err := benchproc.Sleep(ctx, h.o.settle); err != nil {
		return err
	}
	n := float64(h.o.pods)
	m := &res.Cache
	m.Pods = h.o.pods
	var err error
	if m.RSSBytes, err = h.ks.rss(); err != nil {
		return err
	}
	m.RSSPerPod = float64(m.RSSBytes-res.Idle.RSSBytes) / n
	m.HeapInuseBytes = int64(h.ks.metric("go_memstats_heap_inuse_bytes"))
	m.HeapPerPod = float64(m.HeapInuseBytes-res.Idle.HeapInuseBytes) / n
	dst := os.DevNull
	if h.o.profileDir != "" {
		dst = filepath.Join(h.o.profileDir, "heap-cache.pprof")
	}
	if err := h.ks.saveProfile(ctx, "/debug/pprof/heap?gc=1", dst); err != nil {
		return err
	}
	m.HeapAfterGCPerPod = (h.ks.metric("go_memstats_heap_inuse_bytes") - float64(res.Idle.HeapInuseBytes)) / n
	return nil
}

// podSize creates and deletes one pod outside the phases' names and returns
// its protobuf size without managed fields.
func (h *harness) podSize(ctx context.Context) (int, error) {
	pods := h.client.CoreV1().Pods(namespace)
	p, err := pods.Create(ctx, bench.Pod(namespace, "sample"), metav1.CreateOptions{})
	if err != nil {
		return 0, fmt.Errorf("create a sample pod: %w", err)
	}
	if err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		return 0, fmt.Errorf("delete the sample pod: %w", err)
	}
	p.ManagedFields = nil
	return p.Size(), nil
}

// pacer spreads writes evenly over time across all workers. A worker that
// falls behind schedule writes at once, so short stalls are made up.
type pacer struct {
	start    time.Time
	interval time.Duration
	n        atomic.Int64
}

func (p *pacer) wait(ctx context.Context) error {
	at := p.start.Add(time.Duration(p.n.Add(1)-1) * p.interval)
	return benchproc.Sleep(ctx, time.Until(at))
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// kubestream is the process under measurement.
type kubestream struct {
	cmd *exec.Cmd
	// reader is `kubestream tail` when events go to NATS; nil for stdout.
	reader      *exec.Cmd
	rec         *recorder
	logPath     string
	metricsAddr string
	exited      chan struct{}
	stderrDone  chan struct{}
	// readDone is closed once the events' pipe (kubestream's stdout, or the
	// reader's) reached its end: Wait closes the pipe, so it must come after.
	readDone    chan struct{}
	stoppedLine string
}

// startKubestream runs kubestream and reads its events: from its stdout, or
// when readerArgs are given, from the stdout of a second kubestream process
// (tail) started once the first is serving.
func startKubestream(binary string, args, readerArgs []string, logPath string) (*kubestream, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	ks := &kubestream{rec: newRecorder(), logPath: logPath, exited: make(chan struct{}), stderrDone: make(chan struct{})}
	ks.cmd = exec.Command(binary, args...)
	ks.cmd.Env = append(os.Environ(), "POD_NAME=bench")
	ks.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := ks.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := ks.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := ks.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kubestream: %w", err)
	}
	addr := make(chan string, 1)
	go func() {
		defer close(ks.stderrDone)
		defer logFile.Close()
		benchproc.ScanLog(stderr, logFile, addr, func(line string) {
			if strings.Contains(line, `"Stopped"`) {
				ks.stoppedLine = line
			}
		})
	}()
	readDone := make(chan struct{})
	ks.readDone = readDone
	if readerArgs == nil {
		go func() {
			defer close(readDone)
			ks.rec.read(stdout)
		}()
	} else {
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
	}
	go func() {
		if readerArgs == nil {
			<-readDone
		}
		<-ks.stderrDone
		_ = ks.cmd.Wait()
		close(ks.exited)
	}()
	select {
	case ks.metricsAddr = <-addr:
	case <-ks.exited:
		return nil, fmt.Errorf("kubestream exited at start; log: %s", logPath)
	case <-time.After(60 * time.Second):
		ks.kill()
		return nil, fmt.Errorf("kubestream did not report its listen address; log: %s", logPath)
	}
	if readerArgs != nil {
		ks.reader = exec.Command(binary, readerArgs...)
		ks.reader.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		ks.reader.Stderr = os.Stderr
		out, err := ks.reader.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := ks.reader.Start(); err != nil {
			ks.kill()
			return nil, fmt.Errorf("start kubestream tail: %w", err)
		}
		go func() {
			defer close(readDone)
			ks.rec.read(out)
		}()
	}
	return ks, nil
}

// stop sends SIGTERM and returns the exit code.
func (ks *kubestream) stop(timeout time.Duration) (int, error) {
	_ = ks.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ks.exited:
	case <-time.After(timeout):
		ks.kill()
		return -1, fmt.Errorf("kubestream did not exit within %s of SIGTERM; log: %s", timeout, ks.logPath)
	}
	if ks.reader != nil {
		_ = ks.reader.Process.Signal(syscall.SIGTERM)
		// Read the reader's output to its end before Wait closes the pipe
		// (otherwise the last read fails with "file already closed").
		select {
		case <-ks.readDone:
		case <-time.After(timeout):
			_ = ks.reader.Process.Kill()
			<-ks.readDone
		}
		_ = ks.reader.Wait()
		ks.reader = nil
	}
	ks.rec.mu.Lock()
	recErr := ks.rec.err
	ks.rec.mu.Unlock()
	if recErr != nil {
		return -1, fmt.Errorf("read kubestream's stdout: %w", recErr)
	}
	if !strings.Contains(ks.stoppedLine, "leftUnpublished=0") {
		return -1, fmt.Errorf("kubestream's last words were not \"Stopped ... leftUnpublished=0\" (%q); log: %s", ks.stoppedLine, ks.logPath)
	}
	return ks.cmd.ProcessState.ExitCode(), nil
}

func (ks *kubestream) kill() {
	if ks.reader != nil && ks.reader.Process != nil {
		_ = ks.reader.Process.Kill()
		_ = ks.reader.Wait()
		ks.reader = nil
	}
	select {
	case <-ks.exited:
	default:
		_ = ks.cmd.Process.Kill()
		<-ks.exited
	}
}

// cpuSeconds is utime+stime of the process from /proc/<pid>/stat.
func (ks *kubestream) cpuSeconds() (float64, error) { return benchproc.CPUSeconds(ks.cmd.Process.Pid) }

// rss is VmRSS from /proc/<pid>/status.
func (ks *kubestream) rss() (int64, error) { return benchproc.RSS(ks.cmd.Process.Pid) }

// metric reads one unlabelled sample from /metrics; NaN when absent.
func (ks *kubestream) metric(name string) float64 { return benchproc.Metric(ks.metricsAddr, name, 0) }

func (ks *kubestream) saveProfile(ctx context.Context, path, dst string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ks.metricsAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s", path, resp.Status)
	}
	if dst != os.DevNull {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("save %s: %w", path, err)
	}
	return f.Close()
}

// recorder reads kubestream's JSON lines and notes when each event arrived.
type recorder struct {
	mu     sync.Mutex
	at     map[string]time.Time // event key -> first receipt
	counts map[string]int       // pod name prefix -> events
	ended  bool
	err    error
}

func newRecorder() *recorder {
	return &recorder{at: map[string]time.Time{}, counts: map[string]int{}}
}

// wireEvent is the part of a protojson kubestream.v1.Event the harness reads.
type wireEvent struct {
	Operation string `json:"operation"`
	Object    struct {
		Name            string `json:"name"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"object"`
}

func (r *recorder) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		now := time.Now()
		var ev wireEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			r.mu.Lock()
			r.err = fmt.Errorf("stdout line is not an event: %w", err)
			r.mu.Unlock()
			continue
		}
		op := strings.TrimPrefix(ev.Operation, "OPERATION_")
		r.mu.Lock()
		switch op {
		case "REPLAY_END":
			r.ended = true
		case opCreate, "UPDATED", opDelete:
			key := eventKey(ev.Object.Name, op, ev.Object.ResourceVersion)
			if _, dup := r.at[key]; !dup {
				r.at[key] = now
			}
			prefix, _, _ := strings.Cut(ev.Object.Name, "-")
			r.counts[prefix]++
		}
		r.mu.Unlock()
	}
	if err := sc.Err(); err != nil {
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
	}
}

func (r *recorder) replayEnded() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ended
}

func (r *recorder) received(key string) bool {
	_, ok := r.receivedAt(key)
	return ok
}

func (r *recorder) receivedAt(key string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.at[key]
	return t, ok
}

func (r *recorder) delivered(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[prefix]
}

func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\nkubestream load benchmark\n")
	fmt.Fprintf(w, "machine:  %d CPUs (%s), Linux %s, %s\n", r.Machine.CPUs, r.Machine.CPUModel, r.Machine.Kernel, r.Machine.GoVersion)
	fmt.Fprintf(w, "settings: %d pods of %d bytes (protobuf), target %.0f writes/s, %d writers; kubestream %s\n\n",
		r.Settings.Pods, r.Settings.PodBytes, r.Settings.Rate, r.Settings.Workers, strings.Join(r.Settings.Args, " "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\twrites\twrites/s\tevents\tdelivered\tcoalesced\tCPU-s\tCPU-s/1000 ev\tCPU-s/1000 writes\tlag p50\tlag p99\tlag max\t")
	for _, p := range r.Phases {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%d\t%d\t%d\t%.2f\t%.3f\t%.3f\t%s\t%s\t%s\t\n", p.Name, p.Writes, p.WritesPerSecond, p.EventsExpected, p.EventsDelivered, p.Coalesced,
			p.CPUSeconds, p.CPUPer1000, p.CPUPer1000Write, seconds(p.LagP50), seconds(p.LagP99), seconds(p.LagMax))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nmemory (kubestream process)\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "idle after initial list\tRSS %s\theap in use %s\tCPU %.4f s/s\t\n", mib(r.Idle.RSSBytes), mib(r.Idle.HeapInuseBytes), r.Idle.CPUPerSecond)
	fmt.Fprintf(tw, "%d pods cached\tRSS %s\theap in use %s\t\t\n", r.Cache.Pods, mib(r.Cache.RSSBytes), mib(r.Cache.HeapInuseBytes))
	fmt.Fprintf(tw, "per cached pod\tRSS %.1f KB\theap in use %.1f KB\tafter GC %.1f KB\t\n", r.Cache.RSSPerPod/1000, r.Cache.HeapPerPod/1000, r.Cache.HeapAfterGCPerPod/1000)
	tw.Flush()
	fmt.Fprintf(w, "\nlag is from the write's response to the event's line on stdout, 0 when the event came first:\n")
	for _, p := range r.Phases {
		fmt.Fprintf(w, "  %s: %d of %d events came before their write's response; from sending the write: p50 %s, p99 %s\n",
			p.Name, p.EarlyEvents, p.Writes-p.Unmatched, seconds(p.LagFromSendP50), seconds(p.LagFromSendP99))
	}
	for _, p := range r.Phases {
		if p.WriteErrors > 0 || p.Unmatched > 0 {
			fmt.Fprintf(w, "\n%s: %d writes failed, %d writes had no event of their own (coalesced into a later one)\n", p.Name, p.WriteErrors, p.Unmatched)
		}
	}
	fmt.Fprintf(w, "\nkubestream exit code after SIGTERM: %d; log: %s\n", r.ExitCode, r.Log)
}

func seconds(s float64) string { return benchproc.Seconds(s, "") }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
