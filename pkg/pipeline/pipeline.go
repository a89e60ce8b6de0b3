// Package pipeline carries changes from the source to a sink: a bounded queue
// keyed by object, workers that translate and publish in batches, retries
// with backoff, and coalescing per object when the sink falls behind.
//
// Guarantees:
//   - Per-key order: a key has at most one change in flight; the next one is
//     handed to the sink only after the previous one was acknowledged (or
//     failed for good).
//   - At-least-once: a change leaves the queue only after Sink.Publish
//     acknowledged it. Retriable errors are retried, with backoff, forever.
//   - Bounded memory: Enqueue never blocks and a key holds at most one change
//     in flight plus one pending per uid and epoch, because pending changes of
//     one object coalesce (latest state wins; deletes are never dropped; an
//     object created and deleted before anything was published vanishes).
//     Memory grows with the number of objects, not with the rate of changes.
//   - Fences: replay markers are published only after every change enqueued
//     before them was acknowledged, and changes enqueued after a marker wait
//     until the marker was acknowledged, so a round's events sit between its
//     begin and end markers on every key. Nothing folds across a marker.
//   - No head-of-line blocking: a key that keeps failing holds back only
//     itself. A marker waits for it at most MarkerWait once every key it
//     waits for is failing, then goes out naming those keys
//     (ReplayMarker.pending_keys); their events follow in order.
//   - Deletes are not lost silently: a delete the sink refuses for good is
//     published once more as its identity alone; only if that fails too it
//     is counted in DeletesLost.
//   - Heartbeats follow their kind: a kind's heartbeat is published only
//     after every change of that kind enqueued before it was acknowledged
//     (or, once it has waited MarkerWait and all of them are failing, naming
//     their keys), without holding back anything enqueued after it. A newer
//     heartbeat of a kind replaces one still waiting.
//   - Ignored updates (change.Advanced) are never published: they take their
//     place in their key's order and, when their turn comes, OnAdvanced
//     records their position.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
)

// Sink publishes events to a broker.
type Sink interface {
	// Publish sends events and returns once the broker acknowledged them or
	// gave up. The result is nil when every event was acknowledged, else it
	// has one entry per event: nil for acknowledged, an error otherwise.
	// Errors wrapped with Permanent are not retried.
	Publish(ctx context.Context, events []*kubestreamv1.Event) []error
}

// Translator turns a change into the event to publish.
type Translator interface {
	Translate(c *change.Change) (*kubestreamv1.Event, error)
}

// ErrPermanent marks an error that retrying cannot fix (for example an event
// larger than the broker accepts even after trimming).
var ErrPermanent = errors.New("permanent failure")

// Permanent wraps err so the pipeline counts the event as failed and moves on
// instead of retrying.
func Permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }

// Options tune the pipeline. Zero values take the defaults.
type Options struct {
	// Workers is the number of concurrent Publish calls. Default 4.
	Workers int
	// BatchSize is the most events per Publish call. Default 256.
	BatchSize int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// retries of one event. Defaults 100ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// MarkerWait bounds how long a replay marker waits for keys that keep
	// failing (a missing topic, a refused record) once every key it still
	// waits for is failing; it then goes out naming them. Default 30s;
	// negative waits forever.
	MarkerWait time.Duration
	// BeforePublish, when set, runs before each Publish call with the events
	// about to be sent (resume intents); when it fails, the whole batch
	// fails and is retried.
	BeforePublish func(ctx context.Context, events []*kubestreamv1.Event) error
	// OnAcknowledged, when set, is called after events were acknowledged with
	// the time each was first enqueued. It runs on a worker: keep it cheap.
	OnAcknowledged func(ev *kubestreamv1.Event, enqueued time.Time)
	// OnAdvanced, when set, is called for an ignored update (change.Advanced)
	// once every earlier change of its key was acknowledged: the position it
	// stands for may be recorded. It runs on a worker: keep it cheap.
	OnAdvanced func(c *change.Change)
}

// maxPendingKeys bounds the keys a marker names; beyond it the marker says
// the list is truncated.
const maxPendingKeys = 1000

func (o *Options) defaults() {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.MarkerWait == 0 {
		o.MarkerWait = 30 * time.Second
	}
}

// Stats are the pipeline's counters since start.
type Stats struct {
	Enqueued  uint64 // changes accepted by Enqueue
	Published uint64 // events acknowledged by the sink
	Retried   uint64 // publish attempts that failed and were retried
	Coalesced uint64 // changes folded into a pending change of the same object
	Cancelled uint64 // creates that vanished with their delete before publishing
	// Lost counts events that never reached the broker in any form
	// (translation errors, permanent sink errors after every fallback).
	Lost uint64
	// DeletesIdentityOnly counts deletes published as their identity alone
	// because the sink refused them in full; DeletesLost the deletes lost
	// even so (also in Lost).
	DeletesIdentityOnly, DeletesLost uint64
	// MarkersForced counts markers published while keys they waited for
	// were still failing (see Options.MarkerWait).
	MarkersForced uint64
	// Advanced counts ignored updates whose position was recorded;
	// HeartbeatsReplaced heartbeats replaced by a newer one of their kind
	// while waiting; HeartbeatsForced heartbeats published naming pending
	// keys.
	Advanced, HeartbeatsReplaced, HeartbeatsForced uint64
	Pending                                        int // changes queued or in flight now
	Keys                                           int // objects with queued or in-flight changes now
	Markers                                        int // replay markers not yet acknowledged
	// Failing is how many queued changes failed their last attempt;
	// FailingSince when the oldest of them first failed, and LastError
	// the most recent failure.
	Failing      int
	FailingSince time.Time
	LastError    string
}

// item is one queued change.
type item struct {
	key      string
	ch       *change.Change
	ev       *kubestreamv1.Event // translated on first dispatch, reused on retries
	epoch    uint64
	enqueued time.Time
	attempts int
	// firstFailure is when the item first failed (zero while it has not).
	firstFailure time.Time
	// identityOnly: the sink refused the full event for good; ev is now the
	// identity alone.
	identityOnly bool
	// headSince (fences only) is when the fence became the first in line.
	headSince time.Time
	// roundEnd (fences only) marks a REPLAY_END, fixed at enqueue: workers
	// replace ch when they publish a fence.
	roundEnd bool
	// waiters are the heartbeats waiting for this item; done is set once it
	// was acknowledged or dropped.
	waiters []*item
	done    bool
	// Heartbeats only: waitFor are the items of the kind queued before it,
	// remaining how many of them are not done; forced lets it go although
	// some are not; replaced marks one a newer heartbeat took the place of.
	waitFor   []*item
	remaining int
	forced    bool
	replaced  bool
}

func (it *item) heartbeat() bool { return it.ch.Op == change.Heartbeat }

// releasable reports whether an item may be dispatched as far as
// heartbeats are concerned.
func (it *item) releasable() bool { return !it.heartbeat() || it.remaining == 0 || it.forced }

// keyState holds the queued changes of one key, oldest first.
type keyState struct {
	items    []*item
	inFlight bool // items[0] is with a worker or waiting for its backoff
}

// Pipeline is the bounded keyed queue and its workers.
type Pipeline struct {
	sink       Sink
	translator Translator
	opts       Options

	mu   sync.Mutex
	cond *sync.Cond
	keys map[string]*keyState
	// ready holds keys whose first item may be dispatched now. urgent holds
	// keys dispatched before them (isUrgent): live changes, and the queued
	// snapshots they wait behind, so a round of 100 000 snapshots does not
	// make live changes wait their turn behind it. passed counts the urgent
	// keys dispatched since a ready one while ready ones waited.
	ready  []string
	urgent []string
	passed int
	// Fences: markers split the queue into epochs. Items of epoch e wait
	// until every fence before e was acknowledged, except a round's end
	// marker once its begin marker was (see openEpoch); the fence closing
	// epoch e waits until every item of epoch e was acknowledged.
	epoch        uint64              // epoch new items join
	currentEpoch uint64              // lowest epoch not yet finished
	epochItems   map[uint64]int      // items queued or in flight, per epoch
	fences       []*item             // markers in order; fences[0] closes currentEpoch
	fenceBusy    bool                // fences[0] is with a worker
	parked       map[uint64][]string // keys whose first item waits for its epoch
	pending      int
	closed       bool
	// failing are the queued items whose last attempt failed.
	failing   map[*item]struct{}
	lastError string
	// waiting are the items waiting out their backoff, with their timers.
	waiting  map[*item]*time.Timer
	lastWake time.Time
	// lastAck is when a publish last succeeded.
	lastAck time.Time

	enqueued, published, retried, coalesced, cancelled, lost atomic.Uint64
	deletesIdentityOnly, deletesLost, markersForced          atomic.Uint64
	advanced, heartbeatsReplaced, heartbeatsForced           atomic.Uint64

	wg sync.WaitGroup
	// idle is signalled when pending drops to zero.
	idle *sync.Cond
}

// New creates a pipeline. Start its workers with Run.
func New(sink Sink, translator Translator, opts Options) *Pipeline {
	opts.defaults()
	p := &Pipeline{
		sink:       sink,
		translator: translator,
		opts:       opts,
		keys:       map[string]*keyState{},
		epochItems: map[uint64]int{},
		parked:     map[uint64][]string{},
		failing:    map[*item]struct{}{},
		waiting:    map[*item]*time.Timer{},
	}
	p.cond = sync.NewCond(&p.mu)
	p.idle = sync.NewCond(&p.mu)
	return p
}

// Enqueue adds a change. It never blocks: when the object already has a
// pending change that was not handed to the sink yet, the two coalesce.
// Changes enqueued after Shutdown began are dropped and reported false.
func (p *Pipeline) Enqueue(c *change.Change) bool {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.enqueued.Add(1)
	if c.IsMarker() {
		f := &item{ch: c, epoch: p.epoch, enqueued: now, roundEnd: c.Op == change.ReplayEnd}
		if len(p.fences) == 0 {
			f.headSince = now
		}
		p.fences = append(p.fences, f)
		p.epoch++
		p.pending++
		p.unpark()
		p.maybeReleaseFence()
		return true
	}
	key := c.Key()
	ks := p.keys[key]
	if ks == nil {
		ks = &keyState{}
		p.keys[key] = ks
	}
	if c.Op == change.Heartbeat {
		p.enqueueHeartbeat(key, ks, c, now)
		return true
	}
	// Only a change nobody has tried to publish yet, and that no marker
	// separates from the new one, may absorb it.
	if n := len(ks.items); n > 0 && !(n == 1 && ks.inFlight) && ks.items[n-1].attempts == 0 && ks.items[n-1].epoch == p.epoch {
		last := ks.items[n-1]
		if merged, ok := change.Coalesce(last.ch, c); ok {
			p.coalesced.Add(1)
			if merged == nil {
				p.cancelled.Add(1)
				p.dropLast(key, ks)
				return true
			}
			last.ch = merged
			last.ev = nil
			return true
		}
	}
	it := &item{key: key, ch: c, epoch: p.epoch, enqueued: now}
	ks.items = append(ks.items, it)
	p.epochItems[it.epoch]++
	p.pending++
	switch {
	case len(ks.items) == 1 && !ks.inFlight:
		p.makeReady(key, it)
	case !ks.inFlight && c.Op != change.Snapshot && ks.items[0].ch.Op == change.Snapshot && ks.items[0].epoch <= p.openEpoch():
		// A live change behind its object's queued snapshot: the snapshot
		// goes first, now, instead of at its turn in the round.
		p.urgent = append(p.urgent, key)
		p.cond.Signal()
	}
	return true
}

// enqueueHeartbeat queues a kind's heartbeat behind every change of the kind
// queued now. Heartbeats sit outside the epochs: markers do not wait for
// them, nor they for markers. Caller holds mu.
func (p *Pipeline) enqueueHeartbeat(key string, ks *keyState, c *change.Change, now time.Time) {
	hb := &item{key: key, ch: c, enqueued: now}
	prefix := c.Kind.Resource + "/"
	for k, other := range p.keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		for _, it := range other.items {
			// Heartbeats replaced meanwhile wait for nothing.
			it.waiters = slices.DeleteFunc(it.waiters, func(w *item) bool { return w.replaced })
			it.waiters = append(it.waiters, hb)
			hb.waitFor = append(hb.waitFor, it)
		}
	}
	hb.remaining = len(hb.waitFor)
	if n := len(ks.items); n > 0 && !(n == 1 && ks.inFlight) {
		// The waiting one says less than this one: replace it.
		ks.items[n-1].replaced = true
		ks.items[n-1] = hb
		p.heartbeatsReplaced.Add(1)
	} else {
		ks.items = append(ks.items, hb)
		p.pending++
	}
	if ks.items[0] == hb && !ks.inFlight {
		p.makeReady(key, hb)
	}
}

// doneWaiting marks an item acknowledged or dropped for the heartbeats
// waiting for it, and lets go those that waited for nothing else. Caller
// holds mu.
func (p *Pipeline) doneWaiting(it *item) {
	it.done = true
	for _, hb := range it.waiters {
		if hb.replaced {
			continue
		}
		hb.remaining--
		if hb.remaining == 0 {
			p.readyIfHead(hb)
		}
	}
	it.waiters = nil
}

// readyIfHead makes a heartbeat dispatchable when it is first in line.
// Caller holds mu.
func (p *Pipeline) readyIfHead(hb *item) {
	if ks := p.keys[hb.key]; ks != nil && len(ks.items) > 0 && ks.items[0] == hb && !ks.inFlight {
		p.makeReady(hb.key, hb)
	}
}

// maybeForceHeartbeats lets go the heartbeats that waited MarkerWait for
// changes that are all failing: they go out naming those keys. Caller holds
// mu.
func (p *Pipeline) maybeForceHeartbeats(now time.Time) {
	if p.opts.MarkerWait < 0 {
		return
	}
	for key, ks := range p.keys {
		if !strings.HasPrefix(key, change.HeartbeatKeyPrefix) || len(ks.items) == 0 || ks.inFlight {
			continue
		}
		hb := ks.items[0]
		if hb.releasable() || now.Sub(hb.enqueued) < p.opts.MarkerWait {
			continue
		}
		failing := true
		for _, it := range hb.waitFor {
			if !it.done && it.firstFailure.IsZero() {
				failing = false
				break
			}
		}
		if failing {
			hb.forced = true
			p.heartbeatsForced.Add(1)
			p.makeReady(key, hb)
		}
	}
}

// withHeartbeatPending returns a heartbeat naming the keys of the changes it
// waited for that are still not acknowledged.
func (p *Pipeline) withHeartbeatPending(it *item) *change.Change {
	p.mu.Lock()
	seen := map[string]bool{}
	var keys []string
	truncated := false
	for _, w := range it.waitFor {
		if w.done || seen[w.key] {
			continue
		}
		if len(keys) == maxPendingKeys {
			truncated = true
			break
		}
		seen[w.key] = true
		keys = append(keys, w.key)
	}
	p.mu.Unlock()
	sort.Strings(keys)
	out := *it.ch
	hb := proto.CloneOf(it.ch.Heartbeat)
	hb.PendingKeys, hb.PendingKeysTruncated = keys, truncated
	out.Heartbeat = hb
	return &out
}

// dropLast removes a key's last item, which was never handed to the sink.
// Stale entries of the key in ready or parked are skipped by next. Caller
// holds mu.
func (p *Pipeline) dropLast(key string, ks *keyState) {
	n := len(ks.items)
	it := ks.items[n-1]
	ks.items = ks.items[:n-1]
	p.epochItems[p.epochOf(it)]--
	p.pending--
	p.doneWaiting(it)
	if len(ks.items) == 0 && !ks.inFlight {
		delete(p.keys, key)
	}
	p.maybeReleaseFence()
	if p.pending == 0 {
		p.idle.Broadcast()
		p.cond.Broadcast()
	}
}

// epochOf is the epoch an item is counted in: its own, or the current one
// when a marker went out without it (its count was carried over). Caller
// holds mu.
func (p *Pipeline) epochOf(it *item) uint64 { return max(it.epoch, p.currentEpoch) }

// openEpoch is the latest epoch whose items may be published: the current
// one, and the epochs behind round-end markers at the head of the fences.
// A change that follows a round's REPLAY_END may go out before it, once the
// round's REPLAY_BEGIN is out: a create or an update mentions its object in
// the round, so the end marker keeps it, and a delete removes it; its key's
// own snapshot is ahead of it in the key's order. Holding it back would
// delay every live change by the whole round (seconds for 100 000 objects).
// It may not go before the REPLAY_BEGIN: a create published before it would
// be remembered by the round, never mentioned, and dropped at its end.
// Caller holds mu.
func (p *Pipeline) openEpoch() uint64 {
	e := p.currentEpoch
	for _, f := range p.fences {
		if !f.roundEnd {
			break
		}
		e++
	}
	return e
}

// makeReady queues key for dispatch, or parks it until its epoch comes.
// Caller holds mu.
func (p *Pipeline) makeReady(key string, head *item) {
	if !head.releasable() {
		return // its last awaited change lets it go
	}
	if head.epoch > p.openEpoch() {
		p.parked[head.epoch] = append(p.parked[head.epoch], key)
		return
	}
	if p.isUrgent(key, head) {
		p.urgent = append(p.urgent, key)
	} else {
		p.ready = append(p.ready, key)
	}
	p.cond.Signal()
}

// isUrgent says whether a key whose head may be dispatched goes before the
// snapshots of a round: a live change (in the round or past its end), or a
// snapshot with a live change behind it. Within an epoch the order across
// keys is free and each key's own order is kept, so a round of 100 000
// snapshots need not delay a live change by its length. Caller holds mu.
func (p *Pipeline) isUrgent(key string, head *item) bool {
	return head.epoch > p.currentEpoch || head.ch.Op != change.Snapshot || p.liveBehind(key)
}

// maybeReleaseFence hands the first fence to the workers once its epoch is
// drained. Caller holds mu.
func (p *Pipeline) maybeReleaseFence() {
	if len(p.fences) == 0 || p.fenceBusy || p.epochItems[p.currentEpoch] > 0 {
		return
	}
	p.releaseFence()
}

// maybeForceFence releases the first fence although its epoch is not
// drained, when it has waited MarkerWait and every key it waits for is
// failing: those keys must not hold the stream back. Caller holds mu.
func (p *Pipeline) maybeForceFence(now time.Time) {
	if len(p.fences) == 0 || p.fenceBusy || p.opts.MarkerWait < 0 {
		return
	}
	if p.epochItems[p.currentEpoch] == 0 {
		p.releaseFence()
		return
	}
	if now.Sub(p.fences[0].headSince) < p.opts.MarkerWait || len(p.failing) == 0 {
		return
	}
	for key, ks := range p.keys {
		if strings.HasPrefix(key, change.HeartbeatKeyPrefix) {
			continue // markers do not wait for heartbeats
		}
		if len(ks.items) > 0 && ks.items[0].epoch <= p.currentEpoch && ks.items[0].firstFailure.IsZero() {
			return // still making progress, or not tried yet
		}
	}
	p.markersForced.Add(1)
	p.releaseFence()
}

func (p *Pipeline) releaseFence() {
	p.fenceBusy = true
	p.ready = append(p.ready, "")
	p.cond.Signal()
}

// pendingKeys lists the keys with changes of the current epoch or before
// still unacknowledged, for a marker that goes out without them. Caller
// holds mu.
func (p *Pipeline) pendingKeys() (keys []string, truncated bool) {
	for key, ks := range p.keys {
		if len(ks.items) == 0 || ks.items[0].epoch > p.currentEpoch || strings.HasPrefix(key, change.HeartbeatKeyPrefix) {
			continue
		}
		if len(keys) == maxPendingKeys {
			truncated = true
			break
		}
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys, truncated
}

// fenceDone advances to the next epoch after the first fence was published.
// Items the fence went out without are counted in the next epoch. Caller
// holds mu.
func (p *Pipeline) fenceDone(now time.Time) {
	p.fences = p.fences[1:]
	p.fenceBusy = false
	left := p.epochItems[p.currentEpoch]
	delete(p.epochItems, p.currentEpoch)
	p.currentEpoch++
	p.epochItems[p.currentEpoch] += left
	if len(p.fences) > 0 {
		p.fences[0].headSince = now
	}
	p.unpark()
	p.cond.Broadcast()
	p.maybeReleaseFence()
}

// liveBehind reports whether a key has a live change, or a change past the
// current round's end, queued behind its head. Caller holds mu.
func (p *Pipeline) liveBehind(key string) bool {
	ks := p.keys[key]
	if ks == nil {
		return false
	}
	for _, it := range ks.items[min(1, len(ks.items)):] {
		if it.epoch > p.currentEpoch || it.ch.Op != change.Snapshot {
			return true
		}
	}
	return false
}

// unpark queues the keys parked for epochs that are open now. Caller holds
// mu.
func (p *Pipeline) unpark() {
	for e, open := p.currentEpoch, p.openEpoch(); e <= open; e++ {
		for _, key := range p.parked[e] {
			ks := p.keys[key]
			if e > p.currentEpoch || (ks != nil && len(ks.items) > 0 && p.isUrgent(key, ks.items[0])) {
				p.urgent = append(p.urgent, key) // past a round's end, live, or ahead of such
			} else {
				p.ready = append(p.ready, key)
			}
		}
		delete(p.parked, e)
	}
}

// Run starts the workers and blocks until ctx is cancelled. Call Shutdown
// first to drain before cancelling.
func (p *Pipeline) Run(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.closed = true
		p.cond.Broadcast()
		p.idle.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	if p.opts.MarkerWait > 0 {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.watchFences(ctx)
		}()
	}
	for i := 0; i < p.opts.Workers; i++ {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.worker(ctx)
		}()
	}
	p.wg.Wait()
}

// watchFences checks now and then whether a marker has waited long enough
// for failing keys.
func (p *Pipeline) watchFences(ctx context.Context) {
	t := time.NewTicker(min(max(p.opts.MarkerWait/4, 5*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.mu.Lock()
			done := p.closed && p.pending == 0
			p.maybeForceFence(now)
			p.maybeForceHeartbeats(now)
			p.mu.Unlock()
			if done {
				return
			}
		}
	}
}

// Shutdown stops accepting changes and waits until everything queued was
// acknowledged or ctx ends. It reports how many changes were left.
func (p *Pipeline) Shutdown(ctx context.Context) int {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	_ = p.WaitIdle(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending
}

// WaitIdle blocks until nothing is queued or in flight, or ctx ends.
func (p *Pipeline) WaitIdle(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.idle.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.pending > 0 && ctx.Err() == nil {
		p.idle.Wait()
	}
	return ctx.Err()
}

// PendingMarkers is the number of replay markers not yet acknowledged.
func (p *Pipeline) PendingMarkers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.fences)
}

// Stats returns the counters.
func (p *Pipeline) Stats() Stats {
	p.mu.Lock()
	st := Stats{Pending: p.pending, Keys: len(p.keys), Markers: len(p.fences), Failing: len(p.failing), LastError: p.lastError}
	for it := range p.failing {
		if st.FailingSince.IsZero() || it.firstFailure.Before(st.FailingSince) {
			st.FailingSince = it.firstFailure
		}
	}
	p.mu.Unlock()
	st.Enqueued = p.enqueued.Load()
	st.Published = p.published.Load()
	st.Retried = p.retried.Load()
	st.Coalesced = p.coalesced.Load()
	st.Cancelled = p.cancelled.Load()
	st.Lost = p.lost.Load()
	st.DeletesIdentityOnly = p.deletesIdentityOnly.Load()
	st.DeletesLost = p.deletesLost.Load()
	st.MarkersForced = p.markersForced.Load()
	st.Advanced = p.advanced.Load()
	st.HeartbeatsReplaced = p.heartbeatsReplaced.Load()
	st.HeartbeatsForced = p.heartbeatsForced.Load()
	return st
}

// next takes up to BatchSize dispatchable items, blocking until there is at
// least one. It returns nil when ctx ended, or when the pipeline is closed
// and drained.
func (p *Pipeline) next(ctx context.Context) []*item {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for len(p.ready) == 0 && len(p.urgent) == 0 {
			if ctx.Err() != nil || (p.closed && p.pending == 0) {
				return nil
			}
			p.cond.Wait()
		}
		if ctx.Err() != nil {
			return nil
		}
		var batch []*item
		for (len(p.urgent) > 0 || len(p.ready) > 0) && len(batch) < p.opts.BatchSize {
			var key string
			// Urgent keys first, but a batch's worth of them at most
			// while others wait: a steady stream of live changes must
			// not hold a round's snapshots (and its end marker) back
			// for good.
			if len(p.urgent) > 0 && (len(p.ready) == 0 || p.passed < p.opts.BatchSize) {
				key, p.urgent = p.urgent[0], p.urgent[1:]
				if len(p.ready) > 0 {
					p.passed++
				}
			} else {
				key, p.ready = p.ready[0], p.ready[1:]
				p.passed = 0
			}
			if key == "" {
				batch = append(batch, p.fences[0])
				continue
			}
			ks := p.keys[key]
			// Stale entries: the key's item vanished, is taken, or waits
			// for a later epoch (and is parked for it).
			if ks == nil || ks.inFlight || len(ks.items) == 0 || ks.items[0].epoch > p.openEpoch() || !ks.items[0].releasable() {
				continue
			}
			ks.inFlight = true
			batch = append(batch, ks.items[0])
		}
		if len(p.ready) > 0 || len(p.urgent) > 0 {
			p.cond.Signal()
		}
		if len(batch) > 0 {
			return batch
		}
	}
}

func (p *Pipeline) worker(ctx context.Context) {
	logger := klog.FromContext(ctx)
	for {
		batch := p.next(ctx)
		if batch == nil {
			return
		}
		events := make([]*kubestreamv1.Event, 0, len(batch))
		sent := make([]*item, 0, len(batch))
		for _, it := range batch {
			switch it.ch.Op {
			case change.Advanced:
				// Its turn: every earlier change of the key is acknowledged.
				if p.opts.OnAdvanced != nil {
					p.opts.OnAdvanced(it.ch)
				}
				p.advanced.Add(1)
				p.finish(it)
				continue
			case change.ReplayEnd:
				// Named afresh on every attempt: what is still pending now.
				it.ev = nil
				it.ch = p.withPendingKeys(it.ch)
			case change.Heartbeat:
				it.ev = nil
				it.ch = p.withHeartbeatPending(it)
			}
			if it.ev == nil {
				ev, err := p.translator.Translate(it.ch)
				if err != nil {
					logger.Error(err, "Dropping change that cannot be translated", "key", it.key, "op", it.ch.Op.String())
					p.drop(it)
					continue
				}
				it.ev = ev
			}
			events = append(events, it.ev)
			sent = append(sent, it)
		}
		if len(sent) == 0 {
			continue
		}
		var results []error
		if p.opts.BeforePublish != nil {
			if err := p.opts.BeforePublish(ctx, events); err != nil {
				results = make([]error, len(events))
				for i := range results {
					results[i] = err
				}
			}
		}
		if results == nil {
			results = p.sink.Publish(ctx, events)
		}
		acked := false
		for i, it := range sent {
			var err error
			if results != nil {
				err = results[i]
			}
			switch {
			case err == nil:
				acked = true
				p.published.Add(1)
				if p.opts.OnAcknowledged != nil {
					p.opts.OnAcknowledged(it.ev, it.enqueued)
				}
				p.finish(it)
			case errors.Is(err, ErrPermanent) && it.ch.Op == change.Deleted && !it.identityOnly:
				// A consumer needs a delete's identity, not its final state.
				logger.Info("Sink refused a delete for good, publishing its identity alone", "key", it.key, "eventID", it.ev.GetId(), "err", err.Error())
				it.identityOnly = true
				it.ev = event.IdentityOnly(it.ev)
				p.deletesIdentityOnly.Add(1)
				p.release(it)
			case errors.Is(err, ErrPermanent):
				logger.Error(err, "Dropping event the sink cannot accept", "key", it.key, "eventID", it.ev.GetId(), "op", it.ch.Op.String())
				p.drop(it)
			case ctx.Err() != nil:
				// Shutting down hard: leave it queued; it is reported as left over.
				p.release(it)
			default:
				p.retried.Add(1)
				it.attempts++
				p.failed(it, err)
				delay := p.backoff(it.attempts)
				if it.attempts == 1 || it.attempts%10 == 0 {
					logger.Info("Publish failed, retrying", "key", it.key, "eventID", it.ev.GetId(), "attempt", it.attempts, "retryIn", delay, "err", err.Error())
				}
				p.backOff(it, delay)
			}
		}
		if acked {
			p.wakeBackedOff()
		}
	}
}

// wakeInterval bounds how often a successful publish wakes the changes
// waiting out their backoff.
const wakeInterval = time.Second

// backOff schedules its retry after delay, at most wakeInterval when a
// publish succeeded that recently: a change that failed while the broker
// came back would otherwise miss the wake that the success just spent.
func (p *Pipeline) backOff(it *item, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.lastAck) < wakeInterval {
		delay = min(delay, wakeInterval)
	}
	p.waiting[it] = time.AfterFunc(delay, func() { p.retryNow(it) })
}

// retryNow makes a backed-off item dispatchable, once.
func (p *Pipeline) retryNow(it *item) {
	p.mu.Lock()
	t, ok := p.waiting[it]
	if ok {
		delete(p.waiting, it)
	}
	p.mu.Unlock()
	if ok {
		t.Stop()
		p.release(it)
	}
}

// wakeBackedOff retries the changes waiting out their backoff now: a
// publish just succeeded, so the broker is (at least partly) back, and a
// change need not wait up to MaxBackoff more. A key that keeps failing is
// woken at most once per wakeInterval.
func (p *Pipeline) wakeBackedOff() {
	p.mu.Lock()
	p.lastAck = time.Now()
	if len(p.waiting) == 0 || time.Since(p.lastWake) < wakeInterval {
		p.mu.Unlock()
		return
	}
	p.lastWake = time.Now()
	its := make([]*item, 0, len(p.waiting))
	for it := range p.waiting {
		its = append(its, it)
	}
	p.mu.Unlock()
	for _, it := range its {
		p.retryNow(it)
	}
}

// withPendingKeys returns an end marker naming the keys still pending.
func (p *Pipeline) withPendingKeys(c *change.Change) *change.Change {
	p.mu.Lock()
	keys, truncated := p.pendingKeys()
	p.mu.Unlock()
	out := *c
	r := *c.Replay
	r.PendingKeys, r.PendingKeysTruncated = keys, truncated
	out.Replay = &r
	return &out
}

// failed records a failed attempt for readiness and metrics.
func (p *Pipeline) failed(it *item, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if it.firstFailure.IsZero() {
		it.firstFailure = time.Now()
	}
	p.failing[it] = struct{}{}
	p.lastError = err.Error()
}

// drop counts an event that never reaches the broker and moves on.
func (p *Pipeline) drop(it *item) {
	p.lost.Add(1)
	if it.ch.Op == change.Deleted {
		p.deletesLost.Add(1)
	}
	p.finish(it)
}

// backoff is exponential with full jitter between MinBackoff and MaxBackoff.
func (p *Pipeline) backoff(attempt int) time.Duration {
	d := p.opts.MinBackoff << min(attempt-1, 20)
	if d > p.opts.MaxBackoff || d <= 0 {
		d = p.opts.MaxBackoff
	}
	return p.opts.MinBackoff + rand.N(d-p.opts.MinBackoff+1)
}

// release makes an item that failed dispatchable again.
func (p *Pipeline) release(it *item) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if it.key == "" {
		p.ready = append(p.ready, "")
		p.cond.Signal()
		return
	}
	ks := p.keys[it.key]
	ks.inFlight = false
	p.makeReady(it.key, it)
}

// finish removes an acknowledged (or dropped) item and lets the next item of
// its key go.
func (p *Pipeline) finish(it *item) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending--
	delete(p.failing, it)
	if it.key == "" {
		p.fenceDone(now)
	} else if it.heartbeat() {
		ks := p.keys[it.key]
		ks.items = ks.items[1:]
		ks.inFlight = false
		if len(ks.items) == 0 {
			delete(p.keys, it.key)
		} else {
			p.makeReady(it.key, ks.items[0])
		}
	} else {
		p.doneWaiting(it)
		ks := p.keys[it.key]
		ks.items = ks.items[1:]
		ks.inFlight = false
		e := p.epochOf(it)
		p.epochItems[e]--
		if len(ks.items) == 0 {
			delete(p.keys, it.key)
		} else {
			p.makeReady(it.key, ks.items[0])
		}
		if e == p.currentEpoch {
			p.maybeReleaseFence()
		}
	}
	if len(p.failing) == 0 {
		p.lastError = ""
	}
	if p.pending == 0 {
		p.idle.Broadcast()
		p.cond.Broadcast()
	}
}
