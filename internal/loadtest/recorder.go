package loadtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// The operations of the load generator; each is one write. An update's
// event carries "UPDATED" whatever the write changed.
const (
	opCreate   = "CREATED"
	opAnnotate = "UPDATED/annotation"
	opRelabel  = "UPDATED/label"
	opTick     = "UPDATED/tick" // a new annotation value every time
	opDelete   = "DELETED"
)

// EventKey is what matches a write with its event: the pod's name, the
// operation and the resourceVersion the apiserver answered the write with.
// A delete is matched by name alone: its event carries the deletion's
// resourceVersion, which the client never sees.
func EventKey(pod, op, rv string) string {
	op, _, _ = strings.Cut(op, "/")
	if op == opDelete {
		return pod + "|" + op
	}
	return pod + "|" + op + "|" + rv
}

// Recorder notes when each event was first read: events as JSON lines
// (Line: protojson of kubestream.v1.Event, as the stdout sink writes them
// and the floor watcher imitates), or decoded events read from a broker by
// the harness's own reader (Event).
type Recorder struct {
	mu     sync.Mutex
	at     map[string]time.Time // event key -> first receipt
	counts map[string]int       // pod name prefix -> object events read
	snaps  map[string]int       // pod name prefix -> SNAPSHOT events read
	ends   int                  // REPLAY_END markers read
	begins []time.Time          // when each REPLAY_BEGIN was read
	endAt  []time.Time          // when each REPLAY_END was read
	err    error
	now    func() time.Time
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{at: map[string]time.Time{}, counts: map[string]int{}, snaps: map[string]int{}, now: time.Now}
}

// wireEvent is the part of a protojson kubestream.v1.Event the harness
// reads.
type wireEvent struct {
	Operation string `json:"operation"`
	Object    struct {
		Name            string `json:"name"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"object"`
}

// Read consumes r until it ends. A line that is not an event is an error
// (Err), and reading goes on.
func (r *Recorder) Read(in io.Reader) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		r.Line(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		r.fail(err)
	}
}

// fail keeps err unless an earlier error is kept.
func (r *Recorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// Line records one line, stamped with the time it is called.
func (r *Recorder) Line(line []byte) {
	now := r.now()
	var ev wireEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		r.fail(fmt.Errorf("line is not an event: %w", err))
		return
	}
	r.record(now, strings.TrimPrefix(ev.Operation, "OPERATION_"), ev.Object.Name, ev.Object.ResourceVersion)
}

// Event records one decoded event, received at at: the harness's broker
// reader stamps a message when the source hands it over, before decoding.
func (r *Recorder) Event(at time.Time, ev *kubestreamv1.Event) {
	op := strings.TrimPrefix(ev.GetOperation().String(), "OPERATION_")
	r.record(at, op, ev.GetObject().GetName(), ev.GetObject().GetResourceVersion())
}

// record is Line's and Event's bookkeeping; op is the operation without
// its OPERATION_ prefix.
func (r *Recorder) record(now time.Time, op, name, rv string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch op {
	case "REPLAY_BEGIN":
		r.begins = append(r.begins, now)
	case "REPLAY_END":
		r.ends++
		r.endAt = append(r.endAt, now)
	case opCreate, "UPDATED", opDelete, "SNAPSHOT":
		key := EventKey(name, op, rv)
		if _, dup := r.at[key]; !dup {
			r.at[key] = now
		}
		prefix, _, _ := strings.Cut(name, "-")
		r.counts[prefix]++
		if op == "SNAPSHOT" {
			r.snaps[prefix]++
		}
	}
}

// Err is the first reason an event could not be read (a line or message
// that is not one, or the broker reader failing).
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// ReplayEnds is how many REPLAY_END markers were read.
func (r *Recorder) ReplayEnds() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ends
}

// Markers returns when each REPLAY_BEGIN and REPLAY_END was read.
func (r *Recorder) Markers() (begins, ends []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.begins...), append([]time.Time(nil), r.endAt...)
}

// ReceivedAt is when the event of key was first read.
func (r *Recorder) ReceivedAt(key string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.at[key]
	return t, ok
}

// Delivered is how many object events of pods named prefix-... were read,
// repeats included.
func (r *Recorder) Delivered(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[prefix]
}

// Snapshots is how many SNAPSHOT events of pods named prefix-... were read.
func (r *Recorder) Snapshots(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snaps[prefix]
}
