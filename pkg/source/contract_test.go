package source

// The consumer contract as a property: random interleavings of creates,
// updates, deletes, same-name re-creates, watch gaps with relists, replay
// rounds and sink faults (transient errors, lost acks, outages longer than
// several rounds, a kind whose topic is missing for a while, deletes too
// large to publish in full) go through the real handlers and the real
// pipeline into a sink that keeps only what it acknowledged. A reference
// consumer (pkg/contract) applies that log; at quiescence it must hold
// exactly the objects that exist, at their latest resourceVersion, and
// every uid it ever saw that is gone must have ended with a DELETED.
//
// KUBESTREAM_PROPERTY_SEEDS sets how many seeds run (default 25; `make
// property` runs more); KUBESTREAM_PROPERTY_SEED runs one.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/cache"

	"github.com/kubestream/kubestream/internal/testobj"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/consumer"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/noise"
	"github.com/kubestream/kubestream/pkg/pipeline"
	"github.com/kubestream/kubestream/pkg/resume"
)

// faultySink acknowledges into log what it accepts, and fails as told.
type faultySink struct {
	mu  sync.Mutex
	rng *rand.Rand
	log []*kubestreamv1.Event
	// outage fails every publish; missing fails every event of a resource
	// (a topic that does not exist); flaky is the chance an event fails;
	// lostAck the chance an event is written but its ack is lost.
	outage         bool
	missing        string
	flaky, lostAck float64
}

var errBrokerDown = errors.New("broker unreachable")

func (s *faultySink) Publish(_ context.Context, events []*kubestreamv1.Event) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := make([]error, len(events))
	failed := false
	for i, ev := range events {
		var err error
		switch {
		case s.outage:
			err = errBrokerDown
		case s.missing != "" && ev.GetObject().GetResource() == s.missing:
			err = fmt.Errorf("topic kubestream.%s does not exist", s.missing)
		case ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED && strings.HasPrefix(ev.GetObject().GetName(), "big-") && !ev.GetChange().GetTruncated():
			err = pipeline.Permanent(errors.New("record too large"))
		case s.rng.Float64() < s.flaky:
			err = errors.New("transient broker error")
		case s.rng.Float64() < s.lostAck:
			s.log = append(s.log, ev) // written, but the ack never came
			err = errors.New("ack timed out")
		default:
			s.log = append(s.log, ev)
		}
		if err != nil {
			errs[i], failed = err, true
		}
	}
	if !failed {
		return nil
	}
	return errs
}

func (s *faultySink) set(f func(s *faultySink)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *faultySink) events() []*kubestreamv1.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*kubestreamv1.Event(nil), s.log...)
}

// model is the apiserver's truth and one informer's view of it, per kind.
type model struct {
	rng     *rand.Rand
	rv      int
	nextUID int
	kinds   []*modelKind
}

// process is one run of kubestream: a pipeline, a source with its
// handlers, and the tracker saving acknowledged positions.
type process struct {
	pipe    *pipeline.Pipeline
	src     *Source
	tracker *resume.Tracker
	stop    context.CancelFunc
	done    chan struct{}
}

// startProcess starts kubestream as a restart would: the informers list
// what exists, the saved positions are loaded, and the first round is a
// snapshot (nothing saved) or the difference.
func startProcess(m *model, sink pipeline.Sink, store resume.Store, popts pipeline.Options, watched []kinds.Kind) *process {
	tracker := resume.NewTracker(store, 2*time.Millisecond)
	popts.OnAcknowledged = func(ev *kubestreamv1.Event, _ time.Time) { tracker.Acknowledged(ev) }
	popts.BeforePublish = tracker.Intend
	popts.OnAdvanced = func(c *change.Change) {
		tracker.Seed(c.Key(), resume.Entry{UID: c.UID(), ResourceVersion: c.Object.GetResourceVersion()})
	}
	pipe := pipeline.New(sink, &event.Translator{Cluster: "prop"}, popts)
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{pipe: pipe, tracker: tracker, stop: cancel, done: make(chan struct{})}
	ignore, err := noise.New(noise.Defaults)
	if err != nil {
		panic(err)
	}
	src := &Source{opts: Options{Queue: pipe, Kinds: watched, Now: time.Now, Ignore: ignore}}
	p.src = src
	for i, k := range m.kinds {
		w := &watchedKind{kind: watched[i], emitted: map[string]change.Object{}}
		src.watched = append(src.watched, w)
		k.h = &handler{s: src, w: w}
		k.gap = false
		k.cache = map[string]change.Object{}
		for n, o := range k.truth {
			k.cache[n] = o
			k.h.OnAdd(o, true)
		}
	}
	saved, _ := tracker.Load(ctx)
	if len(saved) == 0 {
		saved = nil
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pipe.Run(ctx) }()
	go func() { defer wg.Done(); tracker.Run(ctx) }()
	go func() { wg.Wait(); close(p.done) }()
	src.Activate(ctx, ActivateOptions{Saved: saved, Seed: tracker.Seed})
	return p
}

// kill stops the process the way SIGKILL does: what is queued and what the
// tracker has not written yet are lost.
func (p *process) kill() {
	p.stop()
	<-p.done
}

type modelKind struct {
	h     *handler
	truth map[string]change.Object // what exists, by name
	cache map[string]change.Object // what the informer delivered
	gap   bool                     // the watch is down: changes pile up in truth only
	// changed is the resourceVersion of each object's last change of
	// content: later resourceVersion-only bumps are not published, so a
	// consumer may hold any resourceVersion from it to the latest.
	changed map[string]int
}

func (k *modelKind) changedAt(o change.Object) {
	if k.changed == nil {
		k.changed = map[string]int{}
	}
	rv, _ := strconv.Atoi(o.GetResourceVersion())
	k.changed[string(o.GetUID())] = rv
}

func (m *model) newObject(k *modelKind, name, uid string) change.Object {
	m.rv++
	rv := strconv.Itoa(m.rv)
	if k.h.w.kind.Resource == kinds.Pods.Resource {
		return testobj.Pod("ns", name, uid, rv, "img:"+rv)
	}
	return testobj.ConfigMap("ns", name, uid, rv, map[string]string{"v": rv})
}

func (m *model) uid() string {
	m.nextUID++
	return "uid-" + strconv.Itoa(m.nextUID)
}

// deliver hands a truth change to the handler unless the watch is in a gap.
func (k *modelKind) create(m *model, name string) {
	o := m.newObject(k, name, m.uid())
	k.truth[name] = o
	k.changedAt(o)
	if !k.gap {
		k.cache[name] = o
		k.h.OnAdd(o, false)
	}
}

// bump is an update that changes nothing but the resourceVersion (a no-op
// apply): the default --ignore-paths keep it from being published.
func (k *modelKind) bump(m *model, name string) {
	old := k.truth[name]
	m.rv++
	o := old.DeepCopyObject().(change.Object)
	o.SetResourceVersion(strconv.Itoa(m.rv))
	k.truth[name] = o
	if !k.gap {
		k.cache[name] = o
		k.h.OnUpdate(old, o)
	}
}

func (k *modelKind) update(m *model, name string) {
	old := k.truth[name]
	o := m.newObject(k, name, string(old.GetUID()))
	k.truth[name] = o
	k.changedAt(o)
	if !k.gap {
		k.cache[name] = o
		k.h.OnUpdate(old, o)
	}
}

func (k *modelKind) remove(name string) {
	old := k.truth[name]
	delete(k.truth, name)
	if !k.gap {
		delete(k.cache, name)
		k.h.OnDelete(old)
	}
}

// relist ends a gap the way client-go's reflector does: an update for every
// listed key the cache had (even unchanged, even with another uid), an add
// for new keys, a tombstone for keys gone.
func (k *modelKind) relist() {
	if !k.gap {
		return
	}
	k.gap = false
	names := make([]string, 0, len(k.truth))
	for n := range k.truth {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		o := k.truth[n]
		if old, ok := k.cache[n]; ok {
			k.h.OnUpdate(old, o)
		} else {
			k.h.OnAdd(o, false)
		}
		k.cache[n] = o
	}
	var gone []string
	for n := range k.cache {
		if _, ok := k.truth[n]; !ok {
			gone = append(gone, n)
		}
	}
	sort.Strings(gone)
	for _, n := range gone {
		k.h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/" + n, Obj: k.cache[n]})
		delete(k.cache, n)
	}
}

func (k *modelKind) pick(rng *rand.Rand) (string, bool) {
	if len(k.truth) == 0 {
		return "", false
	}
	names := make([]string, 0, len(k.truth))
	for n := range k.truth {
		names = append(names, n)
	}
	sort.Strings(names)
	return names[rng.IntN(len(names))], true
}

func propertySeeds(t *testing.T) []uint64 {
	if s := os.Getenv("KUBESTREAM_PROPERTY_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KUBESTREAM_PROPERTY_SEED=%q: %v", s, err)
		}
		return []uint64{n}
	}
	count := 25
	if s := os.Getenv("KUBESTREAM_PROPERTY_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("KUBESTREAM_PROPERTY_SEEDS=%q: want a positive number", s)
		}
		count = n
	}
	seeds := make([]uint64, count)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	return seeds
}

func TestConsumerContractUnderFaults(t *testing.T) {
	for _, seed := range propertySeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			runContract(t, seed, 300)
		})
	}
}

// runContract runs one random scenario of ops steps and checks the
// contract at quiescence.
func runContract(t *testing.T, seed uint64, ops int) {
	rng := rand.New(rand.NewPCG(seed, 0x6b7374))
	sink := &faultySink{rng: rand.New(rand.NewPCG(seed, 1))}
	store := resume.NewMemoryStore()
	popts := pipeline.Options{
		Workers: 1 + rng.IntN(4), BatchSize: 1 + rng.IntN(8),
		MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, MarkerWait: 15 * time.Millisecond,
	}
	watched := []kinds.Kind{kinds.ConfigMaps, kinds.Pods}
	m := &model{rng: rng}
	for range watched {
		m.kinds = append(m.kinds, &modelKind{truth: map[string]change.Object{}, cache: map[string]change.Object{}})
	}
	names := []string{"a", "b", "c", "d", "big-e", "big-f"}
	// The objects that exist before the first start.
	for i, k := range m.kinds {
		k.h = &handler{w: &watchedKind{kind: watched[i]}}
		for _, n := range names[:rng.IntN(len(names))] {
			o := m.newObject(k, n, m.uid())
			k.truth[n] = o
			k.changedAt(o)
		}
	}
	proc := startProcess(m, sink, store, popts, watched)
	defer func() { proc.kill() }()
	restarts := 0

	var trace []string
	for range ops {
		k := m.kinds[rng.IntN(len(m.kinds))]
		switch r := rng.IntN(100); {
		case r < 25:
			n := names[rng.IntN(len(names))]
			if _, ok := k.truth[n]; !ok {
				k.create(m, n)
				trace = append(trace, "create "+n)
			}
		case r < 44:
			if n, ok := k.pick(rng); ok {
				k.update(m, n)
				trace = append(trace, "update "+n)
			}
		case r < 50:
			if n, ok := k.pick(rng); ok {
				k.bump(m, n)
				trace = append(trace, "resourceVersion bump "+n)
			}
		case r < 60:
			if n, ok := k.pick(rng); ok {
				k.remove(n)
				trace = append(trace, "delete "+n)
			}
		case r < 66:
			if n, ok := k.pick(rng); ok {
				k.remove(n)
				k.create(m, n)
				trace = append(trace, "re-create "+n)
			}
		case r < 70:
			if k.gap {
				k.relist()
				trace = append(trace, "relist")
			} else {
				k.gap = true
				trace = append(trace, "watch gap")
			}
		case r < 77:
			// Objects change while the round is enqueued, between its
			// chunks (one object per chunk here).
			proc.src.chunk = 1
			proc.src.afterChunk = func() {
				k := m.kinds[rng.IntN(len(m.kinds))]
				n := names[rng.IntN(len(names))]
				_, exists := k.truth[n]
				switch r := rng.IntN(4); {
				case !exists && r < 2:
					k.create(m, n)
					trace = append(trace, "create "+n+" during the round")
				case exists && r == 0:
					k.update(m, n)
					trace = append(trace, "update "+n+" during the round")
				case exists && r == 1:
					k.remove(n)
					trace = append(trace, "delete "+n+" during the round")
				}
			}
			proc.src.Replay(context.Background(), kubestreamv1.ReplayReason_REPLAY_REASON_RESYNC)
			proc.src.afterChunk = nil
			trace = append(trace, "replay")
		case r < 78:
			// SIGKILL: the queue and unsaved positions are gone; changes
			// made while down are seen only by the next start's list.
			proc.kill()
			for range rng.IntN(6) {
				k := m.kinds[rng.IntN(len(m.kinds))]
				k.gap = true
				if n, ok := k.pick(rng); ok && rng.IntN(2) == 0 {
					k.remove(n)
					k.create(m, n)
				} else if ok {
					k.remove(n)
				}
			}
			proc = startProcess(m, sink, store, popts, watched)
			restarts++
			trace = append(trace, "restart")
		case r < 80:
			on := rng.IntN(2) == 0
			sink.set(func(s *faultySink) { s.outage = on })
			trace = append(trace, fmt.Sprint("outage ", on))
		case r < 83:
			missing := ""
			if rng.IntN(2) == 0 {
				missing = k.h.w.kind.Resource
			}
			sink.set(func(s *faultySink) { s.missing = missing })
			trace = append(trace, "missing topic "+missing)
		case r < 86:
			flaky, lost := rng.Float64()*0.3, rng.Float64()*0.1
			sink.set(func(s *faultySink) { s.flaky, s.lostAck = flaky, lost })
			trace = append(trace, fmt.Sprintf("flaky %.2f lost acks %.2f", flaky, lost))
		case r < 92:
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
		default:
			// Let the sink catch up for a moment, so rounds complete
			// between changes too.
			catchUp, stop := context.WithTimeout(context.Background(), 20*time.Millisecond)
			_ = proc.pipe.WaitIdle(catchUp)
			stop()
		}
	}

	// Quiescence: faults heal, watches catch up, the queue drains.
	sink.set(func(s *faultySink) { s.outage, s.missing, s.flaky, s.lostAck = false, "", 0, 0 })
	for _, k := range m.kinds {
		k.relist()
	}
	waitCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	if err := proc.pipe.WaitIdle(waitCtx); err != nil {
		t.Fatalf("pipeline did not drain: %v (stats %+v)", err, proc.pipe.Stats())
	}

	checkContract(t, sink.events(), m, trace)
	st := proc.pipe.Stats()
	if st.Lost != 0 {
		t.Errorf("%d events lost, want none (stats %+v)", st.Lost, st)
	}
	rounds := 0
	for _, ev := range sink.events() {
		if ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END {
			rounds++
		}
	}
	t.Logf("%d events acknowledged, %d rounds, %d restarts; last process: retried %d, coalesced %d, cancelled %d, deletes as identity %d, markers forced %d, rounds skipped %d, ignored updates recorded %d",
		len(sink.events()), rounds, restarts, st.Retried, st.Coalesced, st.Cancelled, st.DeletesIdentityOnly, st.MarkersForced, proc.src.SkippedRounds(), st.Advanced)
}

func checkContract(t *testing.T, log []*kubestreamv1.Event, m *model, trace []string) {
	t.Helper()
	// The reference consumer (pkg/consumer, on pkg/contract's rule) reads
	// the sink's acknowledged events as one ordered stream.
	judge := consumer.NewStore(consumer.Options{})
	lastOp := map[string]kubestreamv1.Operation{}
	lastRV := map[string]int{}
	for _, ev := range log {
		judge.Apply("sink", ev)
		if ev.GetObject() == nil || ev.GetImageStorage() != nil {
			continue
		}
		uid := ev.GetObject().GetUid()
		rv, _ := strconv.Atoi(ev.GetObject().GetResourceVersion())
		// A delete a resume infers carries the last saved position, which
		// may be older than what the consumer saw: it has no state.
		resumed := ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED && len(ev.GetChange().GetPrevious()) == 0
		if rv < lastRV[uid] && !resumed {
			t.Errorf("uid %s went back from resourceVersion %d to %d (%s)", uid, lastRV[uid], rv, ev.GetOperation())
		}
		lastRV[uid] = rv
		lastOp[uid] = ev.GetOperation()
	}
	want := map[string]string{}
	changed := map[string]int{}
	for _, k := range m.kinds {
		for _, o := range k.truth {
			want[string(o.GetUID())] = o.GetResourceVersion()
			changed[string(o.GetUID())] = k.changed[string(o.GetUID())]
		}
	}
	got := map[string]*consumer.Object{}
	var dropped []string
	for _, c := range judge.Clusters() {
		for uid, o := range judge.Objects(c) {
			got[uid] = o
		}
		dropped = append(dropped, judge.Dropped(c)...)
	}
	var problems []string
	for uid, rv := range want {
		o, ok := got[uid]
		held, _ := strconv.Atoi(o.ResourceVersion)
		latest, _ := strconv.Atoi(rv)
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("missing %s (rv %s)", uid, rv))
		case held < changed[uid] || held > latest:
			// Between its last change of content and the latest: only
			// resourceVersion bumps lie between them.
			problems = append(problems, fmt.Sprintf("%s at rv %s, want %d..%s", uid, o.ResourceVersion, changed[uid], rv))
		}
	}
	for uid, o := range got {
		if _, ok := want[uid]; !ok {
			problems = append(problems, fmt.Sprintf("holds %s (%s) that no longer exists", uid, o.Key()))
		}
	}
	for uid, op := range lastOp {
		if _, exists := want[uid]; !exists && op != kubestreamv1.Operation_OPERATION_DELETED {
			problems = append(problems, fmt.Sprintf("uid %s is gone but its last event is %s, not DELETED", uid, op))
		}
	}
	// Every gone uid got its DELETED, so a round never has to remove one:
	// a removal means the round missed an object that existed.
	if d := dropped; len(d) > 0 {
		problems = append(problems, fmt.Sprintf("REPLAY_END removed %v: the round did not mention objects that existed", d))
	}
	if len(problems) > 0 && os.Getenv("KUBESTREAM_PROPERTY_DUMP") != "" {
		for i, ev := range log {
			o := ev.GetObject()
			t.Logf("%4d %-24s %-12s %-8s rv=%-4s replay=%s %s pending=%v fsu=%v", i, ev.GetOperation(), o.GetResource()+"/"+o.GetName(), o.GetUid(), o.GetResourceVersion(),
				ev.GetReplayId(), ev.GetReplay().GetReason(), ev.GetReplay().GetPendingKeys(), ev.GetChange().GetFinalStateUnknown())
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		t.Fatalf("consumer state differs from the cluster after %d events:\n  %s\ntrace (last 40 steps): %s",
			len(log), strings.Join(problems, "\n  "), strings.Join(trace[max(0, len(trace)-40):], "; "))
	}
}

// The broker is down for longer than several resync periods while objects
// churn: rounds must not pile up, fold into each other or be published
// empty (the consumer once ended with none of the objects that existed).
func TestOutageLongerThanResyncKeepsEveryObject(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	sink := &faultySink{rng: rng}
	pipe := pipeline.New(sink, &event.Translator{Cluster: "outage"}, pipeline.Options{
		MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, MarkerWait: 15 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { pipe.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	src := &Source{opts: Options{Queue: pipe, Kinds: []kinds.Kind{kinds.Pods}, Now: time.Now}, initialID: newReplayID()}
	w := &watchedKind{kind: kinds.Pods, emitted: map[string]change.Object{}}
	src.watched = []*watchedKind{w}
	m := &model{rng: rng}
	k := &modelKind{h: &handler{s: src, w: w}, truth: map[string]change.Object{}, cache: map[string]change.Object{}}
	m.kinds = []*modelKind{k}

	src.Activate(ctx, ActivateOptions{})
	for i := range 200 {
		k.create(m, fmt.Sprintf("pod-%d", i))
	}
	if err := pipe.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	sink.set(func(s *faultySink) { s.outage = true })
	var pending []int
	for round := range 12 {
		for i := range 200 {
			n := fmt.Sprintf("pod-%d", i)
			_, exists := k.truth[n]
			switch (i + round) % 4 {
			case 0:
				if exists {
					k.update(m, n)
				}
			case 1:
				if exists {
					k.remove(n)
				} else {
					k.create(m, n)
				}
			}
		}
		src.Replay(ctx, kubestreamv1.ReplayReason_REPLAY_REASON_RESYNC)
		time.Sleep(10 * time.Millisecond)
		pending = append(pending, pipe.Stats().Pending)
	}
	// Memory follows the names, not the rounds or the changes: at most three
	// epochs (before, inside and after the one undelivered round) with at
	// most two uids each per name, and no growth once every name has them.
	if p := pending[len(pending)-1]; p > 6*200+2 || p > pending[7]+10 {
		t.Fatalf("changes pending after each round of the outage: %v, want a plateau under 6 per name", pending)
	}
	t.Logf("changes pending after each round of the outage: %v", pending)
	sink.set(func(s *faultySink) { s.outage = false })
	waitCtx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	if err := pipe.WaitIdle(waitCtx); err != nil {
		t.Fatalf("pipeline did not drain: %v", err)
	}
	checkContract(t, sink.events(), m, nil)
	if src.SkippedRounds() != 11 {
		t.Errorf("skipped %d rounds, want 11 (every round after the first while it was undelivered)", src.SkippedRounds())
	}
}
