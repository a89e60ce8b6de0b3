package imagestorage

import (
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// Tracker derives image-storage changes from node changes (it implements
// source.Deriver). It keeps, per node, the last severity (for hysteresis and
// transitions) and the points where the node's image bytes changed within
// the growth window; a node's state is dropped when the node is deleted, so
// memory is bounded by the number of nodes. Safe for concurrent use.
type Tracker struct {
	opts       Options
	thresholds *kubestreamv1.ImageStorageThresholds

	mu    sync.Mutex
	nodes map[string]*nodeState
}

type nodeState struct {
	uid      string
	severity kubestreamv1.Severity
	history  history
}

// NewTracker returns a tracker. Call opts.Validate first: NewTracker fills
// unset clock and window but does not check thresholds.
func NewTracker(opts Options) *Tracker {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.GrowthWindow <= 0 {
		opts.GrowthWindow = DefaultGrowthWindow
	}
	return &Tracker{opts: opts, thresholds: opts.thresholds(), nodes: map[string]*nodeState{}}
}

// Nodes returns how many nodes the tracker holds state for.
func (t *Tracker) Nodes() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.nodes)
}

// Derive returns the image-storage change for a node change, or nothing:
//
//   - Created: always, with every image as added.
//   - Snapshot: always (current state; previous totals zero, no added or
//     removed), with the same replay id.
//   - Updated: only when image storage changed (images added, removed or
//     resized; totals, the lower-bound flag, ephemeral-storage capacity or
//     allocatable changed) or the severity changed. Heartbeats, condition
//     and label updates give nothing.
//   - Deleted: always, a final event with node_deleted set, zero totals and
//     severity OK (resolving any alert).
func (t *Tracker) Derive(c *change.Change) []*change.Change {
	if !t.opts.Enabled || c == nil || c.ImageStorage != nil || c.IsMarker() || c.Kind.Resource != kinds.Nodes.Resource {
		return nil
	}
	now := c.ObservedAt
	if now.IsZero() {
		now = t.opts.Now()
	}
	var is *kubestreamv1.ImageStorage
	switch c.Op {
	case change.Created, change.Snapshot, change.Updated:
		node, ok := c.Object.(*corev1.Node)
		if !ok {
			return nil
		}
		prev, _ := c.Previous.(*corev1.Node)
		is = t.observe(c.Op, node, prev, now)
	case change.Deleted:
		node, ok := c.Previous.(*corev1.Node)
		if !ok {
			return nil
		}
		is = t.deleted(node)
	}
	if is == nil {
		return nil
	}
	return []*change.Change{{
		Kind:              c.Kind,
		Op:                c.Op,
		Object:            c.Object,
		Previous:          c.Previous,
		FinalStateUnknown: c.FinalStateUnknown,
		ReplayID:          c.ReplayID,
		ImageStorage:      is,
		ObservedAt:        c.ObservedAt,
	}}
}

func (t *Tracker) observe(op change.Op, node, prevNode *corev1.Node, now time.Time) *kubestreamv1.ImageStorage {
	cur := Account(node, t.opts.MaxImages)
	var before Accounting
	if prevNode != nil {
		before = Account(prevNode, t.opts.MaxImages)
	}
	m := Measures{Bytes: cur.TotalBytes, Share: cur.Share(), CapacityBytes: cur.CapacityBytes}

	t.mu.Lock()
	st := t.nodes[node.Name]
	if st == nil || st.uid != string(node.UID) || op == change.Created {
		// First sight, or the name now belongs to a new node.
		st = &nodeState{uid: string(node.UID)}
		t.nodes[node.Name] = st
	}
	prevSeverity := st.severity
	st.history.record(now, cur.TotalBytes, t.opts.GrowthWindow)
	m.Growth, m.GrowthKnown = st.history.rate(now, t.opts.GrowthWindow)
	sev := t.opts.Severity(prevSeverity, m)
	st.severity = sev
	t.mu.Unlock()

	transition := Transition(prevSeverity, sev)
	// The common case, a heartbeat or an unrelated update: decide cheaply
	// that there is nothing to say.
	if op == change.Updated && transition == kubestreamv1.AlertTransition_ALERT_TRANSITION_NONE && sameStorage(before, cur) {
		return nil
	}

	is := t.base(node.Name, cur)
	is.GrowthBytesPerHour = m.Growth
	is.Severity, is.PreviousSeverity, is.Transition = sev, prevSeverity, transition
	is.Reason = t.opts.reason(prevSeverity, sev, m)
	if cur.LowerBound {
		is.Reason += "; totals are a lower bound: the node reports only its " + strconv.Itoa(t.opts.MaxImages) + " largest images"
	}
	switch op {
	case change.Snapshot:
		// Current state, not a change: nothing is "added"; delta is total
		// minus the zero previous total, as the contract defines it.
		is.DeltaBytes = is.TotalBytes
	case change.Created:
		is.Added = DiffImages(nil, cur.Images).Added
		is.DeltaBytes = is.TotalBytes
	case change.Updated:
		d := DiffImages(before.Images, cur.Images)
		is.PreviousTotalBytes, is.PreviousImageCount = before.TotalBytes, before.ImageCount
		is.DeltaBytes = cur.TotalBytes - before.TotalBytes
		is.Added, is.Removed, is.Resized = d.Added, d.Removed, d.Resized
		if d.Empty() && transition == kubestreamv1.AlertTransition_ALERT_TRANSITION_NONE && sameTotals(before, cur) {
			// Only names changed (a retag): no storage changed.
			return nil
		}
	}
	return is
}

// sameStorage reports whether two accountings are equal image by image, in
// order. Equal lists are the rule on heartbeats; a reordered list falls
// through to DiffImages.
func sameStorage(a, b Accounting) bool {
	if !sameTotals(a, b) || len(a.Images) != len(b.Images) {
		return false
	}
	for i := range a.Images {
		x, y := a.Images[i], b.Images[i]
		if x.SizeBytes != y.SizeBytes || !equalStrings(x.Names, y.Names) {
			return false
		}
	}
	return true
}

func sameTotals(a, b Accounting) bool {
	return a.TotalBytes == b.TotalBytes && a.ImageCount == b.ImageCount && a.LowerBound == b.LowerBound &&
		a.CapacityBytes == b.CapacityBytes && a.AllocatableBytes == b.AllocatableBytes
}

func (t *Tracker) deleted(node *corev1.Node) *kubestreamv1.ImageStorage {
	final := Account(node, t.opts.MaxImages)
	t.mu.Lock()
	prevSeverity := kubestreamv1.Severity_SEVERITY_UNSPECIFIED
	if st := t.nodes[node.Name]; st != nil && st.uid == string(node.UID) {
		prevSeverity = st.severity
		delete(t.nodes, node.Name)
	}
	t.mu.Unlock()
	return &kubestreamv1.ImageStorage{
		Node:               node.Name,
		PreviousTotalBytes: final.TotalBytes,
		PreviousImageCount: final.ImageCount,
		DeltaBytes:         -final.TotalBytes,
		MaxImages:          int32(t.opts.MaxImages),
		Severity:           ok,
		PreviousSeverity:   prevSeverity,
		Transition:         Transition(prevSeverity, ok),
		Reason:             "node deleted",
		NodeDeleted:        true,
		Thresholds:         t.thresholds,
	}
}

func (t *Tracker) base(node string, a Accounting) *kubestreamv1.ImageStorage {
	return &kubestreamv1.ImageStorage{
		Node:                             node,
		TotalBytes:                       a.TotalBytes,
		ImageCount:                       a.ImageCount,
		LowerBound:                       a.LowerBound,
		MaxImages:                        int32(t.opts.MaxImages),
		EphemeralStorageCapacityBytes:    a.CapacityBytes,
		EphemeralStorageAllocatableBytes: a.AllocatableBytes,
		CapacityShare:                    a.Share(),
		TopImages:                        a.Top(TopImages),
		Thresholds:                       t.thresholds,
	}
}

// history holds the points where a node's image bytes changed, enough to
// know the bytes one window ago: the newest point at or before the window's
// start and every point after it. Points closer than window/64 merge, so a
// node changing constantly keeps at most about 65 points.
type history struct {
	points []point
}

type point struct {
	at    time.Time
	bytes int64
}

func (h *history) record(now time.Time, bytes int64, window time.Duration) {
	if n := len(h.points); n > 0 {
		last := &h.points[n-1]
		if last.bytes == bytes {
			return
		}
		if now.Sub(last.at) < window/64 && n > 1 {
			// Merge into the last point: growth reads slightly low rather
			// than memory growing with the change rate.
			last.bytes = bytes
			return
		}
		if now.Before(last.at) {
			now = last.at
		}
	}
	h.points = append(h.points, point{at: now, bytes: bytes})
	cutoff := now.Add(-window)
	drop := 0
	for drop+1 < len(h.points) && !h.points[drop+1].at.After(cutoff) {
		drop++
	}
	if drop > 0 {
		h.points = append(h.points[:0], h.points[drop:]...)
	}
}

// rate is (bytes now - bytes one window ago) per hour; false when the node
// was first seen less than a window ago.
func (h *history) rate(now time.Time, window time.Duration) (float64, bool) {
	if len(h.points) == 0 {
		return 0, false
	}
	cutoff := now.Add(-window)
	if h.points[0].at.After(cutoff) {
		return 0, false
	}
	base := h.points[0]
	for _, p := range h.points[1:] {
		if p.at.After(cutoff) {
			break
		}
		base = p
	}
	cur := h.points[len(h.points)-1].bytes
	return float64(cur-base.bytes) / window.Hours(), true
}
