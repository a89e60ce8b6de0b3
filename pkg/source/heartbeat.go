package source

import (
	"context"
	"time"

	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
)

// heartbeatAttempts bounds how often a tick tries to find a kind's handler
// caught up with its informer before giving up until the next tick.
const heartbeatAttempts = 20

// runHeartbeats enqueues a heartbeat of every active kind each
// HeartbeatInterval until ctx ends.
func (s *Source) runHeartbeats(ctx context.Context) {
	t := time.NewTicker(s.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, w := range s.watchedNow() {
				s.heartbeat(ctx, w)
			}
		}
	}
}

// heartbeat enqueues one watermark of a kind, when its handler has caught
// up with the informer's store: the store's resourceVersion R is read
// first, then every object in the store (whose content is at R or later)
// must be what the handler last emitted, same uid and resourceVersion.
// Then every change up to R was enqueued before this heartbeat, and the
// pipeline publishes it after them. A kind whose handler lags (its
// notifications wait in client-go's buffer) is retried a few times and
// else skipped for this tick.
func (s *Source) heartbeat(ctx context.Context, w *watchedKind) {
	store := w.informer.GetStore()
	for attempt := range heartbeatAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		// Empty when client-go's AtomicFIFO gate is off: the heartbeat
		// then only says the exporter is alive.
		rv := store.LastStoreSyncResourceVersion()
		w.mu.Lock()
		if !w.active || w.removed {
			w.mu.Unlock()
			return
		}
		if !caughtUp(w, store.List()) {
			w.mu.Unlock()
			continue
		}
		s.opts.Queue.Enqueue(&change.Change{Kind: w.kind, Op: change.Heartbeat, ObservedAt: s.opts.Now(),
			Heartbeat: &kubestreamv1.Heartbeat{
				Resource:        w.kind.Resource,
				ResourceVersion: rv,
				ObjectCount:     int64(len(w.emitted)),
				IntervalSeconds: uint32(s.opts.HeartbeatInterval / time.Second),
			}})
		w.mu.Unlock()
		return
	}
	s.heartbeatsDeferred.Add(1)
	klog.FromContext(ctx).V(2).Info("Heartbeat deferred: the kind's handler is behind its informer", "kind", w.kind.Resource)
}

// caughtUp reports whether the handler emitted exactly the store's objects.
// Caller holds w.mu.
func caughtUp(w *watchedKind, objs []any) bool {
	if len(objs) != len(w.emitted) {
		return false
	}
	for _, obj := range objs {
		o, ok := obj.(change.Object)
		if !ok {
			return false
		}
		e, ok := w.emitted[objectKey(o)]
		if !ok || e.GetUID() != o.GetUID() || e.GetResourceVersion() != o.GetResourceVersion() {
			return false
		}
	}
	return true
}

// HeartbeatsDeferred counts heartbeats not sent at their tick because the
// kind's handler was behind its informer.
func (s *Source) HeartbeatsDeferred() uint64 { return s.heartbeatsDeferred.Load() }
