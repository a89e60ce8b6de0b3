package source

import (
	"time"

	"github.com/kubestream/kubestream/pkg/change"
)

// Ignorer decides which updates are not published (noise.Filter).
type Ignorer interface {
	Ignore(resource string, prev, next change.Object) bool
}

// ignored reports whether an update changes only ignored paths. If so it is
// queued as change.Advanced instead: not published, but its position is
// recorded after the object's earlier changes, so a restart does not send
// it. Derived events (image storage) are still derived from it. Caller
// holds h.w.mu.
func (h *handler) ignored(prev, next change.Object, now time.Time) bool {
	if h.s.opts.Ignore == nil || !h.s.opts.Ignore.Ignore(h.w.kind.Resource, prev, next) {
		return false
	}
	h.s.opts.Queue.Enqueue(&change.Change{Kind: h.w.kind, Op: change.Advanced, Object: next, Previous: prev, ObservedAt: now})
	// Derivers still see the update: image-storage alerts are judged again
	// as time passes (growth windows slide) on exactly these heartbeats, and
	// say something only when their state changed.
	upd := &change.Change{Kind: h.w.kind, Op: change.Updated, Object: next, Previous: prev, ObservedAt: now}
	for _, d := range h.s.opts.Derivers {
		for _, dc := range d.Derive(upd) {
			h.s.opts.Queue.Enqueue(dc)
		}
	}
	return true
}
