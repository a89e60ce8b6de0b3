// Package loadtest measures kubestream under load against a real
// kube-apiserver, next to the floor: a bare client-go watch measured in the
// same run on the same workload, so that figures from a shared, noisy
// machine are read as ratios.
//
// A run starts etcd and kube-apiserver (internal/controlplane) once and
// measures each target in turn, in a fresh process, the order alternating
// from round to round:
//
//  1. idle: after the initial list, the baseline RSS, heap and CPU.
//  2. cache: create CachePods pods at Rate and keep them; once every one was
//     read back, RSS and Go heap beyond the baseline, per pod. Then delete
//     them.
//  3. churn: Pods pods, each created, updated twice (an annotation, then a
//     label) and deleted, at Rate writes/s from Workers goroutines: CPU
//     seconds of the process per 1000 events, and the latency from the
//     moment each write was sent to the moment its event was read back.
//
// With BurstPods, a fourth phase creates that many pods as fast as the
// apiserver takes them and deletes them again: the stream must keep up.
//
// With ScalePods, a last scenario creates that many pods before kubestream
// starts and measures its initial round and a replay round at that size.
//
// The figures are reported, never asserted: they depend on the machine.
package loadtest

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubestream/kubestream/internal/controlplane"
	"github.com/kubestream/kubestream/internal/freeport"
	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/tail"
)

// Sinks a Target can name. SinkFloor is the bare watch, not kubestream.
const (
	SinkFloor  = "floor"
	SinkStdout = "stdout"
	SinkNATS   = "nats"
	SinkKafka  = "kafka"
)

// Target is one process to measure.
type Target struct {
	// Name labels the target's rows and plot lines.
	Name string `json:"name"`
	// Sink is SinkFloor, or the kubestream sink: stdout (read from its
	// stdout), nats (the embedded JetStream server) or kafka (kfake, 3
	// brokers, in the harness's process, acks=all); broker sinks are read
	// back in the harness's process with pkg/tail's sources, the ones
	// `kubestream tail` reads with.
	Sink string `json:"sink"`
	// Args are extra arguments for `kubestream run`.
	Args []string `json:"args,omitempty"`
	// Binary is the kubestream binary to run; empty: Options.Binary.
	Binary string `json:"binary,omitempty"`
	// Env is added to kubestream's environment (GOGC=200, GOMEMLIMIT=...).
	Env []string `json:"env,omitempty"`
}

// Floor is the target every run measures first in its first round.
var Floor = Target{Name: "bare watch (floor)", Sink: SinkFloor}

// Options configure a run.
type Options struct {
	// Targets to measure; the floor is added in front when missing.
	Targets []Target
	// Rounds of all targets; the order is reversed every other round, so a
	// drift in the machine's load falls on both sides.
	Rounds int
	// Pods of the churn phase, each written four times.
	Pods int
	// CachePods are created and kept in the cache phase (0: Pods). 20 000
	// is the memory scenario: at 2000 the per-pod figure is mostly the
	// garbage collector's noise.
	CachePods int
	// BurstPods, when positive, adds a burst phase per target: that many pods
	// created as fast as the apiserver takes them, then deleted.
	BurstPods int
	// Rate is the target writes per second; Workers the writing goroutines.
	Rate    float64
	Workers int
	// Settle is the pause before each memory reading.
	Settle time.Duration
	// Binary is the kubestream to measure; empty: built from the module.
	Binary string
	// ProfileDir, when set, receives each kubestream run's CPU profile of
	// the churn phase and heap profile of the cache phase.
	ProfileDir string
	// ScalePods, when positive, runs the scale scenario with that many pods
	// and the first kubestream target; ScaleResync is its --resync (the
	// replay round measured), 0 for the initial round only.
	ScalePods   int
	ScaleResync time.Duration
	// Progress gets a line per step; nil: stderr.
	Progress io.Writer
}

func (o *Options) defaults() {
	if o.Rounds < 1 {
		o.Rounds = 1
	}
	if o.CachePods == 0 {
		o.CachePods = o.Pods
	}
	if o.Workers < 1 {
		o.Workers = 32
	}
	if o.Progress == nil {
		o.Progress = os.Stderr
	}
	hasFloor := false
	for _, t := range o.Targets {
		hasFloor = hasFloor || t.Sink == SinkFloor
	}
	if !hasFloor {
		o.Targets = append([]Target{Floor}, o.Targets...)
	}
}

// Validate says what is wrong with o.
func (o Options) Validate() error {
	if o.Pods < 1 || o.Rate <= 0 || o.Workers < 0 || o.CachePods < 0 || o.ScalePods < 0 || o.BurstPods < 0 {
		return fmt.Errorf("pods and rate must be positive; workers, cache, scale and burst pods not negative")
	}
	for _, t := range o.Targets {
		switch t.Sink {
		case SinkFloor, SinkStdout, SinkNATS, SinkKafka:
		default:
			return fmt.Errorf("target %q: sink %q is not one of floor, stdout, nats, kafka", t.Name, t.Sink)
		}
	}
	return nil
}

// Report is everything a run measured.
type Report struct {
	Machine  Machine  `json:"machine"`
	Settings Settings `json:"settings"`
	Results  []Result `json:"results"`
	Scale    *Scale   `json:"scale,omitempty"`
}

// Settings are the run's load.
type Settings struct {
	Pods      int `json:"pods"`
	CachePods int `json:"cachePods"`
	// PodBytes is the protobuf size of one created pod as the apiserver
	// returned it, managed fields excluded (kubestream strips them).
	PodBytes int      `json:"podProtobufBytes"`
	Rate     float64  `json:"targetWritesPerSecond"`
	Workers  int      `json:"workers"`
	Targets  []Target `json:"targets"`
	Rounds   int      `json:"rounds"`
}

// Result is one target measured once.
type Result struct {
	Round  int      `json:"round"`
	Target string   `json:"target"`
	Sink   string   `json:"sink"`
	Args   []string `json:"args"`
	Idle   Idle     `json:"idle"`
	Cache  Memory   `json:"cache"`
	Phases []Phase  `json:"phases"`
	// ExitCode after SIGTERM at the end (kubestream's "Stopped" line must
	// say leftUnpublished=0, or the run fails).
	ExitCode int `json:"exitCode"`
	// Log is the process's stderr.
	Log string `json:"log"`
}

// Churn is the run's churn phase.
func (r Result) Churn() Phase {
	for _, p := range r.Phases {
		if p.Name == "churn" {
			return p
		}
	}
	return Phase{}
}

// Idle is the process at rest after its initial list.
type Idle struct {
	RSSBytes       int64 `json:"rssBytes"`
	HeapInuseBytes int64 `json:"heapInuseBytes"`
	// HeapAfterGCBytes is the heap in use after a forced collection: the
	// baseline of Memory.HeapAfterGCPerPod.
	HeapAfterGCBytes int64   `json:"heapInuseBytesAfterGC"`
	CPUPerSecond     float64 `json:"cpuSecondsPerSecond"`
}

// Memory is the process with the cache phase's pods cached.
type Memory struct {
	Pods              int     `json:"pods"`
	RSSBytes          int64   `json:"rssBytes"`
	RSSPerPod         float64 `json:"rssBytesPerPod"`
	HeapInuseBytes    int64   `json:"heapInuseBytes"`
	HeapPerPod        float64 `json:"heapInuseBytesPerPod"`
	HeapAfterGCPerPod float64 `json:"heapInuseBytesPerPodAfterGC"`
}

const namespace = "bench"

// Run measures every target o.Rounds times.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Settings: Settings{Pods: o.Pods, CachePods: o.CachePods, Rate: o.Rate, Workers: o.Workers, Targets: o.Targets, Rounds: o.Rounds}}
	work, err := os.MkdirTemp("", "kubestream-loadtest-")
	if err != nil {
		return nil, err
	}
	if o.Binary == "" {
		if o.Binary, err = testbin.GoBuild(work, "kubestream", "./cmd/kubestream"); err != nil {
			return nil, err
		}
	}
	floor, err := testbin.GoBuild(work, "floorwatch", "./internal/loadtest/floorwatch")
	if err != nil {
		return nil, err
	}

	fmt.Fprintln(o.Progress, "loadtest: starting etcd and kube-apiserver")
	cp, err := controlplane.Start(ctx, controlplane.Options{})
	if err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	defer cp.Stop()
	cfg := cp.RestConfig()
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.QPS, cfg.Burst = -1, 0 // the pacer paces, not client-go
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	for _, ns := range []string{namespace, scaleNamespace} {
		if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	l := &loader{client: client, namespace: namespace, rate: o.Rate, workers: o.Workers}
	if rep.Settings.PodBytes, err = l.podSize(ctx); err != nil {
		return nil, err
	}

	for round := 1; round <= o.Rounds; round++ {
		order := append([]Target(nil), o.Targets...)
		if round%2 == 0 {
			for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
				order[i], order[j] = order[j], order[i]
			}
		}
		for _, t := range order {
			fmt.Fprintf(o.Progress, "loadtest: round %d: %s\n", round, t.Name)
			r, err := measure(ctx, o, t, round, cp.Kubeconfig, floor, work, l)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round, t.Name, err)
			}
			rep.Results = append(rep.Results, r)
		}
	}
	if o.ScalePods > 0 {
		t := scaleTarget(o.Targets)
		fmt.Fprintf(o.Progress, "loadtest: scale: %d pods, %s\n", o.ScalePods, t.Name)
		s, err := measureScale(ctx, o, t, cp.Kubeconfig, work, client)
		if err != nil {
			return nil, fmt.Errorf("scale: %w", err)
		}
		rep.Scale = s
	}
	rep.Machine = DescribeMachine()
	return rep, nil
}

// launch starts target t with its sink (and reader) and returns the
// process and a function that releases the sink.
func launch(o Options, t Target, kubeconfig, floorBin, dir string, extra ...string) (*process, func(), error) {
	logPath := filepath.Join(dir, "process.log")
	if t.Sink == SinkFloor {
		p, err := startProcess(floorBin, []string{"--kubeconfig", kubeconfig, "--namespace", namespace}, nil, nil, logPath, true)
		return p, func() {}, err
	}
	bin := t.Binary
	if bin == "" {
		bin = o.Binary
	}
	args := []string{"run", "--kubeconfig", kubeconfig, "--sink", t.Sink, "--kinds", "pods", "--listen-address", "127.0.0.1:0"}
	args = append(args, extra...)
	var newReader func() (tail.Source, error)
	release := func() {}
	switch t.Sink {
	case SinkNATS:
		natsDir := filepath.Join(dir, "nats")
		port, err := freeport.Port()
		if err != nil {
			return nil, nil, err
		}
		args = append(args, "--nats-embedded-dir", natsDir, "--nats-embedded-port", strconv.Itoa(port))
		newReader = natsSource(natsDir)
	case SinkKafka:
		// The broker runs in this process, so its CPU is not counted as
		// kubestream's.
		kc, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.DefaultNumPartitions(6))
		if err != nil {
			return nil, nil, fmt.Errorf("start kfake: %w", err)
		}
		release = kc.Close
		brokers := strings.Join(kc.ListenAddrs(), ",")
		args = append(args, "--kafka-brokers", brokers, "--kafka-create-topics")
		newReader = kafkaSource(kc.ListenAddrs())
	}
	args = append(args, t.Args...)
	p, err := startProcess(bin, args, t.Env, newReader, logPath, false)
	if err != nil {
		release()
		return nil, nil, err
	}
	return p, release, nil
}

// measure runs one target through the idle, cache and churn phases.
func measure(ctx context.Context, o Options, t Target, round int, kubeconfig, floorBin, work string, l *loader) (Result, error) {
	r := Result{Round: round, Target: t.Name, Sink: t.Sink, Args: t.Args}
	dir, err := os.MkdirTemp(work, "run-")
	if err != nil {
		return r, err
	}
	p, release, err := launch(o, t, kubeconfig, floorBin, dir, "--resync", "0")
	if err != nil {
		return r, err
	}
	defer release()
	defer p.kill()
	r.Log = p.logPath

	if err := waitFor(ctx, p, 60*time.Second, "the initial list", func() bool { return p.rec.ReplayEnds() > 0 }); err != nil {
		return r, err
	}
	if err := measureIdle(ctx, o, p, &r.Idle); err != nil {
		return r, err
	}
	create, err := l.phase(ctx, p, "cache-create", "cache", o.CachePods, []string{opCreate})
	if err != nil {
		return r, err
	}
	if err := measureCache(ctx, o, p, &r, profilePath(o, round, t, "heap-cache")); err != nil {
		return r, err
	}
	del, err := l.phase(ctx, p, "cache-delete", "cache", o.CachePods, []string{opDelete})
	if err != nil {
		return r, err
	}
	profiled := make(chan error, 1)
	if dst := profilePath(o, round, t, "cpu-churn"); dst != os.DevNull {
		seconds := int(math.Ceil(4*float64(o.Pods)/o.Rate)) + 2
		go func() {
			profiled <- p.saveProfile(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), dst)
		}()
	} else {
		profiled <- nil
	}
	churn, err := l.phase(ctx, p, "churn", "churn", o.Pods, []string{opCreate, opAnnotate, opRelabel, opDelete})
	if err != nil {
		return r, err
	}
	if err := <-profiled; err != nil {
		return r, err
	}
	r.Phases = []Phase{churn, create, del}
	if o.BurstPods > 0 {
		burst := *l
		burst.rate = 0
		b, err := burst.phase(ctx, p, "burst", "burst", o.BurstPods, []string{opCreate})
		if err != nil {
			return r, err
		}
		bd, err := burst.phase(ctx, p, "burst-delete", "burst", o.BurstPods, []string{opDelete})
		if err != nil {
			return r, err
		}
		r.Phases = append(r.Phases, b, bd)
	}
	if r.ExitCode, err = p.stop(30 * time.Second); err != nil {
		return r, err
	}
	return r, nil
}

func profilePath(o Options, round int, t Target, what string) string {
	if o.ProfileDir == "" {
		return os.DevNull
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name))
	return filepath.Join(o.ProfileDir, fmt.Sprintf("%s-%s-round%d.pprof", what, name, round))
}

func measureIdle(ctx context.Context, o Options, p *process, out *Idle) error {
	cpu0, err := p.cpuSeconds()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := Sleep(ctx, o.Settle); err != nil {
		return err
	}
	cpu1, err := p.cpuSeconds()
	if err != nil {
		return err
	}
	out.CPUPerSecond = (cpu1 - cpu0) / time.Since(t0).Seconds()
	if out.RSSBytes, err = p.rss(); err != nil {
		return err
	}
	out.HeapInuseBytes = int64(p.metric("go_memstats_heap_inuse_bytes"))
	if err := p.saveProfile(ctx, "/debug/pprof/heap?gc=1", os.DevNull); err != nil {
		return err
	}
	out.HeapAfterGCBytes = int64(p.metric("go_memstats_heap_inuse_bytes"))
	return nil
}

// measureCache reads memory with the cache phase's pods cached: RSS and
// heap as they are, then the heap after a forced collection (the heap
// profile endpoint collects first).
func measureCache(ctx context.Context, o Options, p *process, r *Result, heapProfile string) error {
	if err := Sleep(ctx, o.Settle); err != nil {
		return err
	}
	n := float64(o.CachePods)
	m := &r.Cache
	m.Pods = o.CachePods
	var err error
	if m.RSSBytes, err = p.rss(); err != nil {
		return err
	}
	m.RSSPerPod = float64(m.RSSBytes-r.Idle.RSSBytes) / n
	m.HeapInuseBytes = int64(p.metric("go_memstats_heap_inuse_bytes"))
	m.HeapPerPod = float64(m.HeapInuseBytes-r.Idle.HeapInuseBytes) / n
	if err := p.saveProfile(ctx, "/debug/pprof/heap?gc=1", heapProfile); err != nil {
		return err
	}
	m.HeapAfterGCPerPod = (p.metric("go_memstats_heap_inuse_bytes") - float64(r.Idle.HeapAfterGCBytes)) / n
	return nil
}
