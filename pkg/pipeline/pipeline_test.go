package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubestream/kubestream/internal/testobj"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/pipeline"
)

// recordingSink acknowledges events in the order it receives them, after
// an optional gate, and fails events as fail decides.
type recordingSink struct {
	mu    sync.Mutex
	acked []*kubestreamv1.Event
	tries map[string]int
	gate  chan struct{} // closed to let Publish proceed; nil = open
	fail  func(ev *kubestreamv1.Event, attempt int) error
	delay func() time.Duration
}

func (s *recordingSink) Publish(ctx context.Context, events []*kubestreamv1.Event) []error {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return allErr(len(events), ctx.Err())
		}
	}
	if s.delay != nil {
		time.Sleep(s.delay())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tries == nil {
		s.tries = map[string]int{}
	}
	var errs []error
	for i, ev := range events {
		s.tries[ev.GetId()]++
		if s.fail != nil {
			if err := s.fail(ev, s.tries[ev.GetId()]); err != nil {
				if errs == nil {
					errs = make([]error, len(events))
				}
				errs[i] = err
				continue
			}
		}
		s.acked = append(s.acked, ev)
	}
	return errs
}

func allErr(n int, err error) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}

func (s *recordingSink) events() []*kubestreamv1.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*kubestreamv1.Event(nil), s.acked...)
}

func start(t *testing.T, sink pipeline.Sink, opts pipeline.Options) *pipeline.Pipeline {
	t.Helper()
	if opts.MinBackoff == 0 {
		opts.MinBackoff, opts.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	p := pipeline.New(sink, &event.Translator{Cluster: "test"}, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

func waitIdle(t *testing.T, p *pipeline.Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.WaitIdle(ctx); err != nil {
		t.Fatalf("pipeline did not drain: %v (stats %+v)", err, p.Stats())
	}
}

func cmChange(op change.Op, name, uid string, rv int) *change.Change {
	obj := testobj.ConfigMap("ns", name, uid, strconv.Itoa(rv), map[string]string{"v": strconv.Itoa(rv)})
	c := &change.Change{Kind: kinds.ConfigMaps, Op: op}
	if op == change.Deleted {
		c.Previous = obj
	} else {
		c.Object = obj
	}
	return c
}

func rvOf(ev *kubestreamv1.Event) int {
	n, _ := strconv.Atoi(ev.GetObject().GetResourceVersion())
	return n
}

func TestPerObjectOrderWithRetriesAndConcurrency(t *testing.T) {
	sink := &recordingSink{
		fail: func(ev *kubestreamv1.Event, attempt int) error {
			if attempt == 1 && rand.IntN(5) == 0 {
				return errors.New("broker hiccup")
			}
			return nil
		},
		delay: func() time.Duration { return time.Duration(rand.IntN(300)) * time.Microsecond },
	}
	p := start(t, sink, pipeline.Options{Workers: 4, BatchSize: 16})
	const objects, updates = 40, 60
	var wg sync.WaitGroup
	for o := 0; o < objects; o++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("cm-%d", o)
			p.Enqueue(cmChange(change.Created, name, name, 1))
			for rv := 2; rv <= updates; rv++ {
				c := cmChange(change.Updated, name, name, rv)
				c.Previous = testobj.ConfigMap("ns", name, name, strconv.Itoa(rv-1), nil)
				p.Enqueue(c)
			}
		}()
	}
	wg.Wait()
	waitIdle(t, p)

	last := map[string]int{}
	for _, ev := range sink.events() {
		name := ev.GetObject().GetName()
		if rv := rvOf(ev); rv <= last[name] {
			t.Fatalf("%s: resourceVersion %d published after %d", name, rv, last[name])
		} else {
			last[name] = rv
		}
	}
	for o := 0; o < objects; o++ {
		if name := fmt.Sprintf("cm-%d", o); last[name] != updates {
			t.Errorf("%s: last published state %d, want %d", name, last[name], updates)
		}
	}
	st := p.Stats()
	if st.Retried == 0 || st.Lost != 0 || st.Pending != 0 {
		t.Fatalf("stats %+v: want retries, no failures, nothing pending", st)
	}
}

func TestMemoryBoundedByObjectsWhileSinkIsBlocked(t *testing.T) {
	sink := &recordingSink{gate: make(chan struct{})}
	p := start(t, sink, pipeline.Options{Workers: 2, BatchSize: 4})
	const objects = 20
	for rv := 1; rv <= 500; rv++ {
		for o := 0; o < objects; o++ {
			name := fmt.Sprintf("cm-%d", o)
			op := change.Updated
			if rv == 1 {
				op = change.Created
			}
			c := cmChange(op, name, name, rv)
			if op == change.Updated {
				c.Previous = testobj.ConfigMap("ns", name, name, strconv.Itoa(rv-1), nil)
			}
			p.Enqueue(c)
		}
	}
	st := p.Stats()
	// One change in flight and one pending per object, at most.
	if st.Pending > 2*objects || st.Keys != objects {
		t.Fatalf("while blocked: %d pending changes for %d objects, want at most %d", st.Pending, st.Keys, 2*objects)
	}
	if st.Coalesced < 500*objects-2*objects {
		t.Fatalf("coalesced %d, want nearly all of %d", st.Coalesced, 500*objects)
	}
	close(sink.gate)
	waitIdle(t, p)
	final := map[string]int{}
	for _, ev := range sink.events() {
		final[ev.GetObject().GetName()] = rvOf(ev)
	}
	for o := 0; o < objects; o++ {
		if got := final[fmt.Sprintf("cm-%d", o)]; got != 500 {
			t.Fatalf("cm-%d: final published state %d, want 500", o, got)
		}
	}
}

func TestDeletesSurviveCoalescingAndReCreatesStayInOrder(t *testing.T) {
	sink := &recordingSink{gate: make(chan struct{})}
	p := start(t, sink, pipeline.Options{Workers: 1, BatchSize: 1})
	p.Enqueue(cmChange(change.Created, "blocker", "b", 1)) // occupies the only worker
	time.Sleep(20 * time.Millisecond)
	// u1 was published before (its updates are what is pending).
	for rv := 1; rv <= 2; rv++ {
		u := cmChange(change.Updated, "x", "u1", rv)
		u.Previous = testobj.ConfigMap("ns", "x", "u1", strconv.Itoa(rv-1), nil)
		p.Enqueue(u)
	}
	p.Enqueue(cmChange(change.Deleted, "x", "u1", 3))
	p.Enqueue(cmChange(change.Created, "x", "u2", 4))
	close(sink.gate)
	waitIdle(t, p)

	var got []string
	for _, ev := range sink.events() {
		if ev.GetObject().GetName() == "x" {
			got = append(got, fmt.Sprintf("%s %s@%s", ev.GetOperation(), ev.GetObject().GetUid(), ev.GetObject().GetResourceVersion()))
		}
	}
	want := []string{"OPERATION_DELETED u1@3", "OPERATION_CREATED u2@4"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events of x = %v, want %v", got, want)
	}
}

// A name deleted and re-created over and over while the sink is blocked
// (a StatefulSet pod during an outage) holds one pending change, not one per
// incarnation: an incarnation created and deleted before anything was
// published never existed for any consumer.
func TestReCreatesDuringOutageDoNotGrowTheQueue(t *testing.T) {
	sink := &recordingSink{gate: make(chan struct{})}
	p := start(t, sink, pipeline.Options{Workers: 1, BatchSize: 1})
	p.Enqueue(cmChange(change.Created, "blocker", "b", 1))
	time.Sleep(20 * time.Millisecond)
	p.Enqueue(cmChange(change.Deleted, "x", "u0", 1)) // a uid consumers know
	for i := 1; i <= 100; i++ {
		uid := "u" + strconv.Itoa(i)
		p.Enqueue(cmChange(change.Created, "x", uid, 2*i))
		p.Enqueue(cmChange(change.Deleted, "x", uid, 2*i+1))
	}
	p.Enqueue(cmChange(change.Created, "x", "last", 1000))
	if st := p.Stats(); st.Pending > 4 {
		t.Fatalf("%d changes pending after 100 incarnations, want at most 4 (blocker, delete of u0, create of the last)", st.Pending)
	}
	close(sink.gate)
	waitIdle(t, p)
	var got []string
	for _, ev := range sink.events() {
		if ev.GetObject().GetName() == "x" {
			got = append(got, fmt.Sprintf("%s %s", ev.GetOperation(), ev.GetObject().GetUid()))
		}
	}
	want := []string{"OPERATION_DELETED u0", "OPERATION_CREATED last"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events of x = %v, want %v", got, want)
	}
	if st := p.Stats(); st.Cancelled != 100 {
		t.Fatalf("cancelled = %d, want 100", st.Cancelled)
	}
}

func TestReplayMarkersFenceTheirRound(t *testing.T) {
	sink := &recordingSink{delay: func() time.Duration { return time.Duration(rand.IntN(200)) * time.Microsecond }}
	p := start(t, sink, pipeline.Options{Workers: 4, BatchSize: 3})
	marker := func(op change.Op) *change.Change {
		return &change.Change{Op: op, ReplayID: "r1", Replay: &change.Replay{Kinds: []string{"configmaps"}}}
	}
	for i := 0; i < 20; i++ {
		p.Enqueue(cmChange(change.Created, fmt.Sprintf("before-%d", i), fmt.Sprintf("b%d", i), 1))
	}
	p.Enqueue(marker(change.ReplayBegin))
	for i := 0; i < 20; i++ {
		c := cmChange(change.Snapshot, fmt.Sprintf("snap-%d", i), fmt.Sprintf("s%d", i), 1)
		c.ReplayID = "r1"
		p.Enqueue(c)
	}
	p.Enqueue(marker(change.ReplayEnd))
	for i := 0; i < 20; i++ {
		p.Enqueue(cmChange(change.Created, fmt.Sprintf("after-%d", i), fmt.Sprintf("a%d", i), 1))
	}
	waitIdle(t, p)

	evs := sink.events()
	pos := map[string]int{}
	for i, ev := range evs {
		pos[ev.GetOperation().String()+"/"+ev.GetObject().GetName()] = i
	}
	begin, end := pos["OPERATION_REPLAY_BEGIN/"], pos["OPERATION_REPLAY_END/"]
	for i := 0; i < 20; i++ {
		if b := pos[fmt.Sprintf("OPERATION_CREATED/before-%d", i)]; b > begin {
			t.Errorf("before-%d at %d, after the begin marker at %d", i, b, begin)
		}
		if s := pos[fmt.Sprintf("OPERATION_SNAPSHOT/snap-%d", i)]; s < begin || s > end {
			t.Errorf("snap-%d at %d, outside the round %d..%d", i, s, begin, end)
		}
		// Live changes after the round may overtake its end marker, never
		// its begin marker.
		if a := pos[fmt.Sprintf("OPERATION_CREATED/after-%d", i)]; a < begin {
			t.Errorf("after-%d at %d, before the begin marker at %d", i, a, begin)
		}
	}
	if len(evs) != 62 {
		t.Fatalf("published %d events, want 62", len(evs))
	}
}

func TestPermanentFailureDoesNotStallOthers(t *testing.T) {
	sink := &recordingSink{fail: func(ev *kubestreamv1.Event, _ int) error {
		if ev.GetObject().GetName() == "huge" && ev.GetObject().GetResourceVersion() == "1" {
			return pipeline.Permanent(errors.New("message too large"))
		}
		return nil
	}}
	p := start(t, sink, pipeline.Options{})
	p.Enqueue(cmChange(change.Created, "huge", "h", 1))
	p.Enqueue(cmChange(change.Created, "small", "s", 1))
	waitIdle(t, p)
	// The object whose event failed is not stuck: its next change goes out.
	u := cmChange(change.Updated, "huge", "h", 2)
	u.Previous = testobj.ConfigMap("ns", "huge", "h", "1", nil)
	p.Enqueue(u)
	waitIdle(t, p)
	if st := p.Stats(); st.Lost != 1 || st.Published != 2 {
		t.Fatalf("stats %+v, want 1 failed and 2 published", st)
	}
}

func TestRetryRepublishesTheSameEventID(t *testing.T) {
	sink := &recordingSink{fail: func(_ *kubestreamv1.Event, attempt int) error {
		if attempt < 3 {
			return errors.New("not yet")
		}
		return nil
	}}
	p := start(t, sink, pipeline.Options{})
	p.Enqueue(cmChange(change.Created, "x", "u1", 1))
	waitIdle(t, p)
	evs := sink.events()
	if len(evs) != 1 || sink.tries[evs[0].GetId()] != 3 {
		t.Fatalf("acked %d events after %v tries, want one event acked on its third try of the same id", len(evs), sink.tries)
	}
}

func TestShutdownDrainsThenRefuses(t *testing.T) {
	sink := &recordingSink{delay: func() time.Duration { return time.Millisecond }}
	p := start(t, sink, pipeline.Options{Workers: 1, BatchSize: 1})
	for i := 0; i < 10; i++ {
		p.Enqueue(cmChange(change.Created, fmt.Sprintf("cm-%d", i), fmt.Sprint(i), 1))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if left := p.Shutdown(ctx); left != 0 {
		t.Fatalf("%d left after shutdown", left)
	}
	if len(sink.events()) != 10 {
		t.Fatalf("published %d of 10", len(sink.events()))
	}
	if p.Enqueue(cmChange(change.Created, "late", "l", 1)) {
		t.Fatal("accepted a change after shutdown")
	}
}

func TestShutdownDeadlineReportsWhatIsLeft(t *testing.T) {
	sink := &recordingSink{fail: func(*kubestreamv1.Event, int) error { return errors.New("broker down") }}
	p := start(t, sink, pipeline.Options{})
	p.Enqueue(cmChange(change.Created, "x", "u1", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if left := p.Shutdown(ctx); left != 1 {
		t.Fatalf("left = %d, want 1 unacknowledged change reported", left)
	}
}

// A change pending before a round must not absorb the round's snapshot (the
// object would then sit outside the round), and a change after the round
// must not fold into it.
func TestNothingFoldsAcrossAMarker(t *testing.T) {
	sink := &recordingSink{gate: make(chan struct{})}
	p := start(t, sink, pipeline.Options{Workers: 1, BatchSize: 1})
	p.Enqueue(cmChange(change.Created, "blocker", "b", 1))
	time.Sleep(20 * time.Millisecond)
	marker := func(op change.Op) *change.Change {
		return &change.Change{Op: op, ReplayID: "r1", Replay: &change.Replay{Kinds: []string{"configmaps"}}}
	}
	p.Enqueue(cmChange(change.Updated, "x", "u1", 2))
	p.Enqueue(marker(change.ReplayBegin))
	snap := cmChange(change.Snapshot, "x", "u1", 2)
	snap.ReplayID = "r1"
	p.Enqueue(snap)
	p.Enqueue(marker(change.ReplayEnd))
	p.Enqueue(cmChange(change.Updated, "x", "u1", 3))
	close(sink.gate)
	waitIdle(t, p)
	var got []string
	for _, ev := range sink.events() {
		if ev.GetObject().GetName() != "blocker" {
			got = append(got, fmt.Sprintf("%s@%s", strings.TrimPrefix(ev.GetOperation().String(), "OPERATION_"), ev.GetObject().GetResourceVersion()))
		}
	}
	// Each change goes out as itself, in the key's order, the snapshot
	// inside its round; the update after the round may come before or after
	// the end marker.
	want := [][]string{
		{"UPDATED@2", "REPLAY_BEGIN@", "SNAPSHOT@2", "REPLAY_END@", "UPDATED@3"},
		{"UPDATED@2", "REPLAY_BEGIN@", "SNAPSHOT@2", "UPDATED@3", "REPLAY_END@"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want[0]) && fmt.Sprint(got) != fmt.Sprint(want[1]) {
		t.Fatalf("stream = %v, want %v or %v", got, want[0], want[1])
	}
}

// A replay round whose end marker waits for a slow snapshot does not hold
// back live changes that follow it, but they never go out before the round
// began: a create published before REPLAY_BEGIN would be dropped at its end.
func TestLiveChangesDoNotWaitForTheRoundsEnd(t *testing.T) {
	var released atomic.Bool
	sink := &recordingSink{fail: func(ev *kubestreamv1.Event, attempt int) error {
		switch {
		case ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_BEGIN && attempt <= 5:
			return errors.New("broker busy")
		case ev.GetObject().GetName() == "slow" && !released.Load():
			return errors.New("broker busy")
		}
		return nil
	}}
	p := start(t, sink, pipeline.Options{Workers: 2, BatchSize: 2, MarkerWait: -1})
	marker := func(op change.Op) *change.Change {
		return &change.Change{Op: op, ReplayID: "r1", Replay: &change.Replay{Kinds: []string{"configmaps"}}}
	}
	p.Enqueue(marker(change.ReplayBegin))
	for _, n := range []string{"slow", "fast"} {
		c := cmChange(change.Snapshot, n, n, 1)
		c.ReplayID = "r1"
		p.Enqueue(c)
	}
	p.Enqueue(marker(change.ReplayEnd))
	p.Enqueue(cmChange(change.Created, "live", "l", 1))
	up := cmChange(change.Updated, "fast", "fast", 2)
	up.Previous = testobj.ConfigMap("ns", "fast", "fast", "1", nil)
	p.Enqueue(up)
	deadline := time.Now().Add(10 * time.Second)
	published := func(op kubestreamv1.Operation, name string) int {
		for i, ev := range sink.events() {
			if ev.GetOperation() == op && ev.GetObject().GetName() == name {
				return i
			}
		}
		return -1
	}
	for published(kubestreamv1.Operation_OPERATION_CREATED, "live") < 0 || published(kubestreamv1.Operation_OPERATION_UPDATED, "fast") < 0 {
		if time.Now().After(deadline) {
			t.Fatalf("live changes held back by the round's end: published %d events", len(sink.events()))
		}
		time.Sleep(time.Millisecond)
	}
	if published(kubestreamv1.Operation_OPERATION_REPLAY_END, "") >= 0 {
		t.Fatal("the end marker went out before the round's slow snapshot")
	}
	released.Store(true)
	waitIdle(t, p)
	begin, end := published(kubestreamv1.Operation_OPERATION_REPLAY_BEGIN, ""), published(kubestreamv1.Operation_OPERATION_REPLAY_END, "")
	live, fastSnap, fastUp := published(kubestreamv1.Operation_OPERATION_CREATED, "live"), published(kubestreamv1.Operation_OPERATION_SNAPSHOT, "fast"), published(kubestreamv1.Operation_OPERATION_UPDATED, "fast")
	if !(begin < live && live < end && begin < fastSnap && fastSnap < fastUp && fastUp < end && published(kubestreamv1.Operation_OPERATION_SNAPSHOT, "slow") < end) {
		t.Fatalf("order: begin %d, live %d, fast snapshot %d, fast update %d, end %d", begin, live, fastSnap, fastUp, end)
	}
}

// One key whose events keep failing (its topic is missing) holds back only
// itself: the round's end marker goes out after MarkerWait naming it, and
// later changes of other keys flow.
func TestFailingKeyDoesNotHoldBackMarkersOrOtherKeys(t *testing.T) {
	sink := &recordingSink{fail: func(ev *kubestreamv1.Event, _ int) error {
		if ev.GetObject().GetName() == "stuck" {
			return errors.New("topic does not exist")
		}
		return nil
	}}
	p := start(t, sink, pipeline.Options{Workers: 2, BatchSize: 4, MarkerWait: 30 * time.Millisecond})
	marker := func(op change.Op) *change.Change {
		return &change.Change{Op: op, ReplayID: "r1", Replay: &change.Replay{Kinds: []string{"configmaps"}}}
	}
	p.Enqueue(marker(change.ReplayBegin))
	for _, name := range []string{"stuck", "fine"} {
		c := cmChange(change.Snapshot, name, "u-"+name, 1)
		c.ReplayID = "r1"
		p.Enqueue(c)
	}
	p.Enqueue(marker(change.ReplayEnd))
	p.Enqueue(cmChange(change.Created, "later", "u-later", 2))

	deadline := time.Now().Add(10 * time.Second)
	var end *kubestreamv1.Event
	for end == nil || !published(sink, "later") {
		if time.Now().After(deadline) {
			t.Fatalf("end marker or later change not published while one key fails; stats %+v", p.Stats())
		}
		time.Sleep(5 * time.Millisecond)
		for _, ev := range sink.events() {
			if ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END {
				end = ev
			}
		}
	}
	if got := end.GetReplay().GetPendingKeys(); fmt.Sprint(got) != "[configmaps/ns/stuck]" {
		t.Fatalf("end marker names pending keys %v, want [configmaps/ns/stuck]", got)
	}
	st := p.Stats()
	if st.MarkersForced != 1 || st.Failing != 1 || st.FailingSince.IsZero() || !strings.Contains(st.LastError, "topic does not exist") {
		t.Fatalf("stats %+v: want one forced marker and the failing key reported with its error", st)
	}
}

func published(s *recordingSink, name string) bool {
	for _, ev := range s.events() {
		if ev.GetObject().GetName() == name {
			return true
		}
	}
	return false
}

// A delete the sink refuses in full (too large even trimmed) is published as
// its identity; only when even that is refused is it counted as lost.
func TestRefusedDeleteIsPublishedAsItsIdentity(t *testing.T) {
	for _, tt := range []struct {
		name          string
		refuseTrimmed bool
	}{{"identity accepted", false}, {"identity refused too", true}} {
		t.Run(tt.name, func(t *testing.T) {
			sink := &recordingSink{fail: func(ev *kubestreamv1.Event, _ int) error {
				if ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED && (tt.refuseTrimmed || !ev.GetChange().GetTruncated()) {
					return pipeline.Permanent(errors.New("record too large"))
				}
				return nil
			}}
			p := start(t, sink, pipeline.Options{})
			p.Enqueue(cmChange(change.Deleted, "huge", "u1", 5))
			waitIdle(t, p)
			st := p.Stats()
			evs := sink.events()
			if tt.refuseTrimmed {
				if len(evs) != 0 || st.DeletesLost != 1 || st.Lost != 1 {
					t.Fatalf("published %d, stats %+v: want nothing published and the delete counted lost", len(evs), st)
				}
				return
			}
			if len(evs) != 1 || st.DeletesIdentityOnly != 1 || st.Lost != 0 {
				t.Fatalf("published %d, stats %+v: want the delete once, as identity", len(evs), st)
			}
			ev := evs[0]
			if ev.GetObject().GetUid() != "u1" || ev.GetObject().GetName() != "huge" || !ev.GetChange().GetTruncated() || len(ev.GetChange().GetPrevious()) != 0 {
				t.Fatalf("published %v, want the identity of u1 flagged truncated", ev)
			}
		})
	}
}

// Once a publish succeeds again, changes waiting out a long backoff are
// retried at once instead of up to MaxBackoff later: the stream catches up
// as soon as the broker is back.
func TestSuccessWakesChangesWaitingOutTheirBackoff(t *testing.T) {
	sink := &recordingSink{fail: func(ev *kubestreamv1.Event, attempt int) error {
		if ev.GetObject().GetName() != "c" && attempt == 1 {
			return errors.New("broker unreachable")
		}
		return nil
	}}
	// Backoff of an hour: without the wake, a and b would not make it.
	p := start(t, sink, pipeline.Options{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	p.Enqueue(cmChange(change.Created, "a", "ua", 1))
	p.Enqueue(cmChange(change.Created, "b", "ub", 1))
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Failing < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("a and b did not fail first: %+v", p.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	p.Enqueue(cmChange(change.Created, "c", "uc", 1))
	waitIdle(t, p)
	if n := len(sink.events()); n != 3 {
		t.Fatalf("published %d events, want 3", n)
	}
}

// A live change does not wait its turn behind a round's snapshots: its
// object's snapshot goes first, then the change, ahead of the rest of the
// round, and a new object's create goes out at once too.
func TestLiveChangeJumpsTheRound(t *testing.T) {
	sink := &recordingSink{gate: make(chan struct{})}
	p := start(t, sink, pipeline.Options{Workers: 1, BatchSize: 1})
	marker := func(op change.Op) *change.Change {
		return &change.Change{Op: op, ReplayID: "r1", Replay: &change.Replay{Kinds: []string{"configmaps"}}}
	}
	p.Enqueue(cmChange(change.Created, "blocker", "b", 1))
	time.Sleep(20 * time.Millisecond) // the worker holds the blocker at the gate
	p.Enqueue(marker(change.ReplayBegin))
	const n = 300
	for i := 0; i < n; i++ {
		c := cmChange(change.Snapshot, fmt.Sprintf("s%d", i), fmt.Sprintf("u%d", i), 1)
		c.ReplayID = "r1"
		p.Enqueue(c)
	}
	p.Enqueue(marker(change.ReplayEnd))
	last := fmt.Sprintf("s%d", n-1)
	up := cmChange(change.Updated, last, fmt.Sprintf("u%d", n-1), 2)
	up.Previous = testobj.ConfigMap("ns", last, fmt.Sprintf("u%d", n-1), "1", nil)
	p.Enqueue(up)
	p.Enqueue(cmChange(change.Created, "new", "n", 1))
	close(sink.gate)
	waitIdle(t, p)
	pos := map[string]int{}
	for i, ev := range sink.events() {
		pos[ev.GetOperation().String()+"/"+ev.GetObject().GetName()] = i
	}
	begin, end := pos["OPERATION_REPLAY_BEGIN/"], pos["OPERATION_REPLAY_END/"]
	snap, upd, created := pos["OPERATION_SNAPSHOT/"+last], pos["OPERATION_UPDATED/"+last], pos["OPERATION_CREATED/new"]
	if !(begin < snap && snap < upd && upd < end && begin < created && created < end) {
		t.Fatalf("order: begin %d, snapshot %d, update %d, new create %d, end %d", begin, snap, upd, created, end)
	}
	if upd > begin+5 || created > begin+5 {
		t.Errorf("the live changes went out at %d and %d of a round from %d to %d: they waited their turn behind the snapshots", upd, created, begin, end)
	}
}

// Live changes go before a round's snapshots, but never all of them: a
// batch's worth at most passes waiting snapshots, so a steady stream of
// live changes cannot hold a round (and its end marker) back for good.
func TestLiveChangesDoNotStarveTheRound(t *testing.T) {
	sink := &recordingSink{gate: make(chan struct{})}
	const batch = 2
	p := start(t, sink, pipeline.Options{Workers: 1, BatchSize: batch})
	p.Enqueue(cmChange(change.Created, "blocker", "b", 1))
	time.Sleep(20 * time.Millisecond) // the worker holds the blocker at the gate
	for i := 0; i < 10; i++ {
		c := cmChange(change.Snapshot, fmt.Sprintf("s%d", i), fmt.Sprintf("su%d", i), 1)
		c.ReplayID = "r1"
		p.Enqueue(c)
	}
	const live = 40
	for i := 0; i < live; i++ {
		p.Enqueue(cmChange(change.Created, fmt.Sprintf("l%d", i), fmt.Sprintf("lu%d", i), 1))
	}
	close(sink.gate)
	waitIdle(t, p)
	evs := sink.events()
	first := -1
	for i, ev := range evs {
		if ev.GetOperation() == kubestreamv1.Operation_OPERATION_SNAPSHOT {
			first = i
			break
		}
	}
	// The blocker, then at most a batch of live changes, then a snapshot.
	if first < 0 || first > 1+batch {
		t.Fatalf("first snapshot published at %d of %d events, after every live change: live changes starve the round", first, len(evs))
	}
	if evs[1].GetOperation() != kubestreamv1.Operation_OPERATION_CREATED {
		t.Fatalf("event 1 is %s: live changes no longer go first", evs[1].GetOperation())
	}
}
