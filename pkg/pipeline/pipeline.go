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
//     in flight plus one pending (per uid), because pending changes of one
//     object coalesce (latest state wins; deletes are never dropped). Memory
//     grows with the number of objects, not with the rate of changes.
//   - Fences: replay markers are published only after every change enqueued
//     before them was acknowledged, and changes enqueued after a marker wait
//     until the marker was acknowledged, so a round's snapshots sit between
//     its begin and end markers on every key.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
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
	// OnAcknowledged, when set, is called after events were acknowledged with
	// the time each was first enqueued. It runs on a worker: keep it cheap.
	OnAcknowledged func(ev *kubestreamv1.Event, enqueued time.Time)
}

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
}

// Stats are the pipeline's counters since start.
type Stats struct {
	Enqueued  uint64 // changes accepted by Enqueue
	Published uint64 // events acknowledged by the sink
	Retried   uint64 // publish attempts that failed and were retried
	Coalesced uint64 // changes folded into a pending change of the same object
	Failed    uint64 // events dropped after a permanent error
	Pending   int    // changes queued or in flight now
	Keys      int    // objects with queued or in-flight changes now
}

// item is one queued change.
type item struct {
	key      string
	ch       *change.Change
	ev       *kubestreamv1.Event // translated on first dispatch, reused on retries
	epoch    uint64
	enqueued time.Time
	attempts int
}

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
	// ready holds keys whose first item may be dispatched now.
	ready []string
	// Fences: markers split the queue into epochs. Items of epoch e wait
	// until every fence before e was acknowledged; the fence closing epoch e
	// waits until every item of epoch e was acknowledged.
	epoch        uint64              // epoch new items join
	currentEpoch uint64              // lowest epoch not yet finished
	epochItems   map[uint64]int      // items queued or in flight, per epoch
	fences       []*item             // markers in order; fences[0] closes currentEpoch
	fenceBusy    bool                // fences[0] is with a worker
	parked       map[uint64][]string // keys whose first item waits for its epoch
	pending      int
	closed       bool

	enqueued, published, retried, coalesced, failed atomic.Uint64

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
		p.fences = append(p.fences, &item{ch: c, epoch: p.epoch, enqueued: now})
		p.epoch++
		p.pending++
		p.maybeReleaseFence()
		return true
	}
	key := c.Key()
	ks := p.keys[key]
	if ks == nil {
		ks = &keyState{}
		p.keys[key] = ks
	}
	// Only a change nobody has tried to publish yet may absorb the new one.
	if n := len(ks.items); n > 0 && !(n == 1 && ks.inFlight) && ks.items[n-1].attempts == 0 {
		last := ks.items[n-1]
		if merged, ok := change.Coalesce(last.ch, c); ok {
			last.ch = merged
			last.ev = nil
			p.coalesced.Add(1)
			return true
		}
	}
	it := &item{key: key, ch: c, epoch: p.epoch, enqueued: now}
	ks.items = append(ks.items, it)
	p.epochItems[it.epoch]++
	p.pending++
	if len(ks.items) == 1 && !ks.inFlight {
		p.makeReady(key, it)
	}
	return true
}

// makeReady queues key for dispatch, or parks it until its epoch comes.
// Caller holds mu.
func (p *Pipeline) makeReady(key string, head *item) {
	if head.epoch > p.currentEpoch {
		p.parked[head.epoch] = append(p.parked[head.epoch], key)
		return
	}
	p.ready = append(p.ready, key)
	p.cond.Signal()
}

// maybeReleaseFence hands the first fence to the workers once its epoch is
// drained. Caller holds mu.
func (p *Pipeline) maybeReleaseFence() {
	if len(p.fences) == 0 || p.fenceBusy {
		return
	}
	if p.epochItems[p.currentEpoch] > 0 {
		return
	}
	p.fenceBusy = true
	p.ready = append(p.ready, "")
	p.cond.Signal()
}

// fenceDone advances to the next epoch after the first fence was published.
// Caller holds mu.
func (p *Pipeline) fenceDone() {
	p.fences = p.fences[1:]
	p.fenceBusy = false
	delete(p.epochItems, p.currentEpoch)
	p.currentEpoch++
	for _, key := range p.parked[p.currentEpoch] {
		p.ready = append(p.ready, key)
	}
	delete(p.parked, p.currentEpoch)
	p.cond.Broadcast()
	p.maybeReleaseFence()
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
	for i := 0; i < p.opts.Workers; i++ {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.worker(ctx)
		}()
	}
	p.wg.Wait()
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

// Stats returns the counters.
func (p *Pipeline) Stats() Stats {
	p.mu.Lock()
	pending, keys := p.pending, len(p.keys)
	p.mu.Unlock()
	return Stats{
		Enqueued:  p.enqueued.Load(),
		Published: p.published.Load(),
		Retried:   p.retried.Load(),
		Coalesced: p.coalesced.Load(),
		Failed:    p.failed.Load(),
		Pending:   pending,
		Keys:      keys,
	}
}

// next takes up to BatchSize dispatchable items, blocking until there is at
// least one. It returns nil when ctx ended, or when the pipeline is closed
// and drained.
func (p *Pipeline) next(ctx context.Context) []*item {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.ready) == 0 {
		if ctx.Err() != nil || (p.closed && p.pending == 0) {
			return nil
		}
		p.cond.Wait()
	}
	if ctx.Err() != nil {
		return nil
	}
	n := min(len(p.ready), p.opts.BatchSize)
	batch := make([]*item, 0, n)
	for _, key := range p.ready[:n] {
		if key == "" {
			batch = append(batch, p.fences[0])
			continue
		}
		ks := p.keys[key]
		ks.inFlight = true
		batch = append(batch, ks.items[0])
	}
	p.ready = p.ready[n:]
	if len(p.ready) > 0 {
		p.cond.Signal()
	}
	return batch
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
			if it.ev == nil {
				ev, err := p.translator.Translate(it.ch)
				if err != nil {
					logger.Error(err, "Dropping change that cannot be translated", "key", it.key, "op", it.ch.Op.String())
					p.failed.Add(1)
					p.finish(it)
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
		results := p.sink.Publish(ctx, events)
		for i, it := range sent {
			var err error
			if results != nil {
				err = results[i]
			}
			switch {
			case err == nil:
				p.published.Add(1)
				if p.opts.OnAcknowledged != nil {
					p.opts.OnAcknowledged(it.ev, it.enqueued)
				}
				p.finish(it)
			case errors.Is(err, ErrPermanent):
				logger.Error(err, "Dropping event the sink cannot accept", "key", it.key, "eventID", it.ev.GetId())
				p.failed.Add(1)
				p.finish(it)
			case ctx.Err() != nil:
				// Shutting down hard: leave it queued; it is reported as left over.
				p.release(it)
			default:
				p.retried.Add(1)
				it.attempts++
				delay := p.backoff(it.attempts)
				if it.attempts == 1 || it.attempts%10 == 0 {
					logger.Info("Publish failed, retrying", "key", it.key, "eventID", it.ev.GetId(), "attempt", it.attempts, "retryIn", delay, "err", err.Error())
				}
				time.AfterFunc(delay, func() { p.release(it) })
			}
		}
	}
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
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending--
	if it.key == "" {
		p.fenceDone()
	} else {
		ks := p.keys[it.key]
		ks.items = ks.items[1:]
		ks.inFlight = false
		p.epochItems[it.epoch]--
		if len(ks.items) == 0 {
			delete(p.keys, it.key)
		} else {
			p.makeReady(it.key, ks.items[0])
		}
		if it.epoch == p.currentEpoch {
			p.maybeReleaseFence()
		}
	}
	if p.pending == 0 {
		p.idle.Broadcast()
		p.cond.Broadcast()
	}
}
