package loadtest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubestream/kubestream/test/bench"
)

// Phase is what one load phase measured of one process.
type Phase struct {
	Name            string  `json:"name"`
	Writes          int     `json:"writes"`
	WriteErrors     int     `json:"writeErrors"`
	WriteSeconds    float64 `json:"writeSeconds"`
	WritesPerSecond float64 `json:"writesPerSecond"`
	EventsExpected  int     `json:"eventsExpected"`
	EventsDelivered int     `json:"eventsDelivered"`
	Coalesced       int64   `json:"coalesced"`
	Unmatched       int     `json:"writesWithoutEvent"`
	// Vanished pods made no event at all: created and deleted while the
	// create was still unpublished, the pipeline dropped the incarnation.
	Vanished        int     `json:"podsVanished"`
	CPUSeconds      float64 `json:"cpuSeconds"`
	CPUPer1000      float64 `json:"cpuSecondsPer1000Events"`
	CPUPer1000Write float64 `json:"cpuSecondsPer1000Writes"`
	// Latency from the moment each write was sent to the moment its event
	// was read: what a consumer sees, the apiserver's own time included.
	LatencyP50 float64 `json:"latencyP50Seconds"`
	LatencyP99 float64 `json:"latencyP99Seconds"`
	LatencyMax float64 `json:"latencyMaxSeconds"`
	// EarlyP50 and LateP50 are the median latencies of the first and the
	// last tenth of the writes, in the order they were sent: a stream that
	// falls behind under a burst shows a LateP50 that keeps growing.
	EarlyP50 float64 `json:"latencyFirstTenthP50Seconds"`
	LateP50  float64 `json:"latencyLastTenthP50Seconds"`
	// Latencies are all of them, sorted (for the CDF).
	Latencies []float64 `json:"latenciesSeconds,omitempty"`
}

// loader writes pods to the apiserver and waits for their events.
type loader struct {
	client    kubernetes.Interface
	namespace string
	rate      float64
	workers   int
}

// phase runs ops on pods named prefix-00000..., each pod's ops in order,
// paced to rate writes per second over all workers (rate 0: as fast as the
// apiserver takes them), then waits until the event of every successful
// write was read by p, or a minute passed. p may be nil: load only.
func (l *loader) phase(ctx context.Context, p *process, name, prefix string, pods int, ops []string) (Phase, error) {
	ph := Phase{Name: name}
	var cpu0 float64
	var coalesced0 float64
	var delivered0 int
	if p != nil {
		var err error
		if cpu0, err = p.cpuSeconds(); err != nil {
			return ph, err
		}
		coalesced0 = p.metricOr0("kubestream_changes_coalesced_total")
		delivered0 = p.rec.Delivered(prefix)
	}

	pace := &pacer{start: time.Now()}
	if l.rate > 0 {
		pace.interval = time.Duration(float64(time.Second) / l.rate)
	}
	var (
		next     atomic.Int64
		mu       sync.Mutex
		writes   []write
		failures int
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= pods || ctx.Err() != nil {
					return
				}
				pod := fmt.Sprintf("%s-%06d", prefix, i)
				for _, op := range ops {
					if err := pace.wait(ctx); err != nil {
						return
					}
					wr, err := l.write(ctx, op, pod)
					mu.Lock()
					if err != nil {
						failures++
						if failures <= 5 {
							fmt.Fprintf(os.Stderr, "loadtest: %s %s: %v\n", op, pod, err)
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
	ph.EventsExpected = expectedEvents(writes)
	if p == nil {
		return ph, nil
	}
	var err error
	if ph.Vanished, err = waitForLast(ctx, p, name, writes); err != nil {
		return ph, err
	}
	cpu1, err := p.cpuSeconds()
	if err != nil {
		return ph, err
	}
	ph.CPUSeconds = cpu1 - cpu0
	ph.EventsDelivered = p.rec.Delivered(prefix) - delivered0
	ph.Coalesced = int64(p.metricOr0("kubestream_changes_coalesced_total") - coalesced0)
	if ph.EventsDelivered > 0 {
		ph.CPUPer1000 = ph.CPUSeconds / float64(ph.EventsDelivered) * 1000
	}
	if ph.Writes > 0 {
		ph.CPUPer1000Write = ph.CPUSeconds / float64(ph.Writes) * 1000
	}
	ph.Latencies, ph.Unmatched = latencies(writes, p.rec)
	ph.EarlyP50, ph.LateP50 = tenths(writes, p.rec)
	ph.LatencyP50, ph.LatencyP99 = Quantile(ph.Latencies, 0.50), Quantile(ph.Latencies, 0.99)
	ph.LatencyMax = Quantile(ph.Latencies, 1)
	return ph, nil
}

// expectedEvents counts the watch events the writes make: a delete is two,
// the apiserver first sets deletionTimestamp (an update), then removes the
// pod.
func expectedEvents(writes []write) int {
	n := 0
	for _, wr := range writes {
		n++
		if wr.op == opDelete {
			n++
		}
	}
	return n
}

// latencies are, sorted, the times from sending each write to reading its
// event; unmatched counts writes whose event was not read (kubestream
// coalesced it into a later one of the same pod).
func latencies(writes []write, rec *Recorder) (sorted []float64, unmatched int) {
	for _, wr := range writes {
		got, ok := rec.ReceivedAt(wr.key)
		if !ok {
			unmatched++
			continue
		}
		sorted = append(sorted, got.Sub(wr.sent).Seconds())
	}
	slices.Sort(sorted)
	return sorted, unmatched
}

// tenths are the median latencies of the first and the last tenth of the
// writes by the time they were sent.
func tenths(writes []write, rec *Recorder) (early, late float64) {
	byTime := slices.Clone(writes)
	slices.SortFunc(byTime, func(a, b write) int { return a.sent.Compare(b.sent) })
	n := max(1, len(byTime)/10)
	first, _ := latencies(byTime[:min(n, len(byTime))], rec)
	last, _ := latencies(byTime[max(0, len(byTime)-n):], rec)
	return Quantile(first, 0.5), Quantile(last, 0.5)
}

// waitForLast waits until the event of each pod's last write was read.
// The last write of a pod is never coalesced away, so this is waiting for
// the phase, with one exception: when a pod's create was still unpublished
// at its delete, the pipeline drops the whole incarnation (no consumer saw
// its uid). A pod none of whose writes made an event counts as vanished
// once kubestream's queue is empty; vanished returns how many did.
func waitForLast(ctx context.Context, p *process, name string, writes []write) (vanished int, err error) {
	last := map[string]write{}
	for _, wr := range writes {
		last[wr.pod] = wr
	}
	seen := map[string]bool{} // pods with at least one event read
	var checked time.Time
	err = waitFor(ctx, p, time.Minute, "the events of "+name, func() bool {
		for pod, wr := range last {
			if _, ok := p.rec.ReceivedAt(wr.key); ok {
				delete(last, pod)
			}
		}
		if len(last) == 0 {
			return true
		}
		if time.Since(checked) < time.Second {
			return false
		}
		checked = time.Now()
		for _, wr := range writes {
			if _, ok := p.rec.ReceivedAt(wr.key); ok {
				seen[wr.pod] = true
			}
		}
		for pod := range last {
			if seen[pod] {
				return false
			}
		}
		// Every pod left made no event at all: vanished if nothing is
		// queued any more (checked twice, a second apart, against a
		// change in flight).
		if p.metricOr0("kubestream_pending_changes") != 0 {
			return false
		}
		vanished++
		return vanished > 1
	})
	if err == nil {
		if vanished > 0 {
			vanished = len(last)
		}
		return vanished, nil
	}
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
		m = append(m, fmt.Sprintf("%s=%v", strings.TrimPrefix(name, "kubestream_"), p.metric(name)))
	}
	return 0, fmt.Errorf("%w: %d pods without their last event (%s); process: %s", err, len(missing), strings.Join(sample, " "), strings.Join(m, " "))
}

// write is one acknowledged write: the event it must produce and when it
// was sent.
type write struct {
	pod  string
	op   string
	key  string
	sent time.Time
}

func (l *loader) write(ctx context.Context, op, name string) (write, error) {
	pods := l.client.CoreV1().Pods(l.namespace)
	var (
		obj  *corev1.Pod
		err  error
		sent = time.Now()
	)
	switch op {
	case opCreate:
		obj, err = pods.Create(ctx, bench.Pod(l.namespace, name), metav1.CreateOptions{})
	case opAnnotate:
		obj, err = pods.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"bench.kubestream.io/step":"1"}}}`), metav1.PatchOptions{})
	case opRelabel:
		obj, err = pods.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"labels":{"version":"v2"}}}`), metav1.PatchOptions{})
	case opTick:
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"bench.kubestream.io/tick":"%d"}}}`, sent.UnixNano())
		obj, err = pods.Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	case opDelete:
		err = pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		return write{pod: name, op: op, key: EventKey(name, op, ""), sent: sent}, err
	default:
		return write{}, fmt.Errorf("unknown operation %q", op)
	}
	if err != nil {
		return write{}, err
	}
	return write{pod: name, op: op, key: EventKey(name, op, obj.ResourceVersion), sent: sent}, nil
}

// podSize creates and deletes one pod outside the phases' names and returns
// its protobuf size without managed fields (kubestream strips them).
func (l *loader) podSize(ctx context.Context) (int, error) {
	pods := l.client.CoreV1().Pods(l.namespace)
	p, err := pods.Create(ctx, bench.Pod(l.namespace, "sample"), metav1.CreateOptions{})
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
// falls behind schedule writes at once, so short stalls are made up. A zero
// interval does not pace.
type pacer struct {
	start    time.Time
	interval time.Duration
	n        atomic.Int64
}

func (p *pacer) wait(ctx context.Context) error {
	if p.interval == 0 {
		return ctx.Err()
	}
	at := p.start.Add(time.Duration(p.n.Add(1)-1) * p.interval)
	return Sleep(ctx, time.Until(at))
}

// waitFor polls cond until it holds, p exits, or timeout passes.
func waitFor(ctx context.Context, p *process, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-p.exited:
			return fmt.Errorf("the process exited while waiting for %s; log: %s", what, p.logPath)
		case <-p.readerDone:
			return fmt.Errorf("the broker reader stopped while waiting for %s: %v", what, p.rec.Err())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not arrive within %s; log: %s", what, timeout, p.logPath)
		}
	}
	return nil
}
