// Package source watches Kubernetes objects of any kind with informers (one
// path for every kind, see listwatch.go; kinds can be added and removed
// while running) and turns every add, update and delete into a
// change.Change for the pipeline. It also runs
// replay rounds: the initial list, and then every --resync period every
// object as snapshots between begin and end markers, read from the state
// the handlers last emitted (not the informer cache, which runs ahead of
// them).
package source

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/resume"
)

// Queue receives changes. Enqueue must not block: it runs on client-go's
// notification goroutine.
type Queue interface {
	Enqueue(c *change.Change) bool
}

// markerCounter is a Queue that knows how many replay markers it has not
// delivered yet; the source then skips a round while the last one is
// still on its way.
type markerCounter interface {
	PendingMarkers() int
}

// Deriver computes further changes from an object change, such as
// image-storage events from node changes. It is called for every change the
// source enqueues, from several goroutines, and must be cheap.
type Deriver interface {
	Derive(c *change.Change) []*change.Change
}

// Options configure a Source.
type Options struct {
	// RestConfig reaches the apiserver: every kind is listed and watched
	// with it (see listwatch.go).
	RestConfig *rest.Config
	Kinds      []kinds.Kind
	// Covers, when set, says whether the kind selection covers a resource
	// name (a pattern such as '*.example.com' covers kinds not served now):
	// on the first round, saved objects of covered kinds the cluster no
	// longer serves are deleted.
	Covers func(resource string) bool
	// Namespace limits namespaced kinds to one namespace; empty means all.
	Namespace string
	// Selector is a label selector applied to every kind, nodes included.
	Selector string
	// Resync is the period of replay rounds; 0 disables them.
	Resync   time.Duration
	Queue    Queue
	Derivers []Deriver
	// Now returns the observation time; default time.Now.
	Now func() time.Time
	// Ignore, when set, keeps updates that change only ignored paths from
	// being published (ignore.go).
	Ignore Ignorer
	// HeartbeatInterval is the period of each kind's heartbeat; 0 disables
	// them (heartbeat.go).
	HeartbeatInterval time.Duration
	// CacheCompression keeps the cached encodings of kinds past
	// CompressAfter objects compressed (change.Codec.WithCompression).
	CacheCompression bool
}

const (
	// CompressAfter is how many objects a kind has had before its cache
	// is compressed: below it the encoder's tables (about 750 KB) would
	// cost more than they save.
	CompressAfter = 1024
	// compressCold is how long a state is cached before it is compressed:
	// its events are published from the uncompressed bytes meanwhile, and
	// a state replaced sooner is never compressed.
	compressCold = time.Second
)

// SyncStat reports one kind's initial list.
type SyncStat struct {
	Kind     string
	Objects  int64
	Duration time.Duration
}

// Source is the informer side of kubestream.
type Source struct {
	opts Options
	// mu guards watched: kinds come and go while running (AddKinds,
	// RemoveKind).
	mu      sync.RWMutex
	watched []*watchedKind
	synced  atomic.Bool
	started time.Time
	// initialID is the replay id of the initial list, set before informers
	// start.
	initialID string
	// skipped counts replay rounds not started because the previous one
	// was still undelivered.
	skipped atomic.Uint64
	// heartbeatsDeferred counts heartbeats not sent at their tick.
	heartbeatsDeferred atomic.Uint64
	// Tests set chunk (replayChunk when 0) and afterChunk, which runs
	// between the chunks of a replay round.
	chunk      int
	afterChunk func()
}

type watchedKind struct {
	kind     kinds.Kind
	informer cache.SharedIndexInformer
	reg      cache.ResourceEventHandlerRegistration
	// stop ends the kind's informer.
	stop context.CancelFunc
	// mu serializes notifications with replay rounds, so a snapshot read
	// from the cache is enqueued before any later notification of the same
	// object (the cache is updated before handlers are called).
	mu sync.Mutex
	// active, guarded by mu, is set once the kind's first round (snapshot or
	// resume diff) was emitted: before, handlers only keep emitted current,
	// so a standby replica is ready to take over at once. removed, guarded
	// by mu, is set when the kind is no longer watched: handlers then do
	// nothing.
	active, removed bool
	// emitted is the last state the handlers emitted per namespace/name,
	// guarded by mu: replay rounds snapshot it, so a snapshot never carries
	// a state newer than, or overtakes, a live change still to be handled.
	// The objects are the informer cache's own (shared, never mutated).
	emitted map[string]change.Object
}

// New validates options and builds the informers. Nothing runs until Start.
func New(opts Options) (*Source, error) {
	if opts.RestConfig == nil || opts.Queue == nil {
		return nil, fmt.Errorf("source needs a rest config and a queue")
	}
	if len(opts.Kinds) == 0 && opts.Covers == nil {
		return nil, fmt.Errorf("source needs at least one kind")
	}
	if _, err := labels.Parse(opts.Selector); err != nil {
		return nil, fmt.Errorf("invalid label selector %q: %w", opts.Selector, err)
	}
	if opts.Resync < 0 {
		return nil, fmt.Errorf("resync period %s is negative: use 0 to disable replays", opts.Resync)
	}
	if opts.HeartbeatInterval < 0 {
		return nil, fmt.Errorf("heartbeat interval %s is negative: use 0 to disable heartbeats", opts.HeartbeatInterval)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Source{opts: opts}
	for _, k := range opts.Kinds {
		w, err := s.newWatched(k)
		if err != nil {
			return nil, err
		}
		s.watched = append(s.watched, w)
	}
	return s, nil
}

// newWatched builds a kind's informer and handler; every kind, typed or
// discovered, takes this one path. client-go's resync stays off: replays
// are ours (see Replay).
func (s *Source) newWatched(k kinds.Kind) (*watchedKind, error) {
	codec := codecFor(k)
	if codec != nil && s.opts.CacheCompression {
		codec.WithCompression(CompressAfter, compressCold)
	}
	lw, err := listWatch(s.opts.RestConfig, k, codec, s.opts.Namespace, s.opts.Selector)
	if err != nil {
		return nil, err
	}
	inf := cache.NewSharedIndexInformerWithOptions(lw, exampleObject(codec, k), cache.SharedIndexInformerOptions{})
	if codec == nil {
		// Decoded objects drop managedFields here; compact ones did in
		// the decoder.
		if err := inf.SetTransform(stripManagedFields); err != nil {
			return nil, fmt.Errorf("set %s transform: %w", k.Resource, err)
		}
	}
	w := &watchedKind{kind: k, informer: inf, emitted: map[string]change.Object{}}
	reg, err := inf.AddEventHandler(&handler{s: s, w: w})
	if err != nil {
		return nil, fmt.Errorf("add %s handler: %w", k.Resource, err)
	}
	w.reg = reg
	return w, nil
}

// StripManagedFields drops metadata.managedFields: they are often half an
// object's size and say nothing to consumers.
func StripManagedFields(obj any) any {
	if m, ok := obj.(metav1.Object); ok && len(m.GetManagedFields()) > 0 {
		m.SetManagedFields(nil)
	}
	return obj
}

func stripManagedFields(obj any) (any, error) { return StripManagedFields(obj), nil }

// Synced reports whether every kind's first round was emitted.
func (s *Source) Synced() bool { return s.synced.Load() }

// Kinds returns the kinds watched now.
func (s *Source) Kinds() []kinds.Kind {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]kinds.Kind, len(s.watched))
	for i, w := range s.watched {
		out[i] = w.kind
	}
	return out
}

func (s *Source) watchedNow() []*watchedKind {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]*watchedKind(nil), s.watched...)
}

// Start starts the informers and waits until every handler received its
// initial list. Nothing is emitted yet: handlers only track the objects
// until Activate.
func (s *Source) Start(ctx context.Context) ([]SyncStat, error) {
	s.started = s.opts.Now()
	return s.startKinds(ctx, s.watchedNow())
}

func (s *Source) startKinds(ctx context.Context, ws []*watchedKind) ([]SyncStat, error) {
	began := s.opts.Now()
	for _, w := range ws {
		kctx, cancel := context.WithCancel(ctx)
		w.stop = cancel
		go w.informer.RunWithContext(kctx)
	}
	stats := make([]SyncStat, len(ws))
	for i, w := range ws {
		if !cache.WaitForCacheSync(ctx.Done(), w.reg.HasSynced) {
			return nil, fmt.Errorf("initial list of %s did not complete: %w", w.kind.Resource, context.Cause(ctx))
		}
		w.mu.Lock()
		n := len(w.emitted)
		w.mu.Unlock()
		stats[i] = SyncStat{Kind: w.kind.Resource, Objects: int64(n), Duration: s.opts.Now().Sub(began)}
	}
	return stats, nil
}

// SnapshotMode says when the first round is a full snapshot, like Debezium's
// snapshot.mode.
type SnapshotMode int

const (
	// SnapshotAuto snapshots everything when there are no saved positions,
	// else sends only the difference (Debezium's "initial").
	SnapshotAuto SnapshotMode = iota
	// SnapshotAlways snapshots everything on every start, and still deletes
	// what the saved positions have and the cluster has not ("always").
	SnapshotAlways
	// SnapshotNever sends no snapshot without saved positions: objects
	// appear in the stream when they change ("no_data"); their positions are
	// recorded through Seed so a later restart sends only differences.
	SnapshotNever
)

// ActivateOptions say how the first round goes.
type ActivateOptions struct {
	// Saved are the saved incarnations by object key
	// (resource/namespace/name); nil when there is no saved state.
	Saved resume.Positions
	Mode  SnapshotMode
	// Seed records a position without an event (SnapshotNever).
	Seed func(key string, e resume.Entry)
}

// ActivateStats count what the first round sent, per kind.
type ActivateStats struct {
	Reason                                      kubestreamv1.ReplayReason
	Snapshots, Created, Updated, Deleted, Equal map[string]int64
}

// Activate emits the first round and switches handlers to emitting live
// changes, kind by kind under the kind's lock, so no live change of a kind
// goes out before its round: a full snapshot when there are no saved
// positions (or Mode is SnapshotAlways), else the difference between the
// saved positions and the objects now: a new key or uid is created (the old
// uid deleted first), a changed resourceVersion is updated (previous state
// unknown), a saved key gone is deleted (final state unknown).
func (s *Source) Activate(ctx context.Context, opts ActivateOptions) ActivateStats {
	ws := s.watchedNow()
	st := s.activate(ctx, ws, opts, true)
	s.synced.Store(true)
	klog.FromContext(ctx).Info("First round enqueued", "reason", st.Reason.String(), "snapshots", st.Snapshots,
		"created", st.Created, "updated", st.Updated, "deleted", st.Deleted, "unchanged", st.Equal)
	return st
}

// activate emits the first round of the kinds ws. first is set for the
// first round of the process: saved positions of kinds no longer served
// are then deleted too.
func (s *Source) activate(ctx context.Context, ws []*watchedKind, opts ActivateOptions, first bool) ActivateStats {
	full := opts.Saved == nil || opts.Mode == SnapshotAlways
	st := ActivateStats{Reason: kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL,
		Snapshots: map[string]int64{}, Created: map[string]int64{}, Updated: map[string]int64{}, Deleted: map[string]int64{}, Equal: map[string]int64{}}
	if !full {
		st.Reason = kubestreamv1.ReplayReason_REPLAY_REASON_RESUME
	}
	markers := !(opts.Saved == nil && opts.Mode == SnapshotNever)
	id := newReplayID()
	if first {
		s.initialID = id
	}
	names := kindNames(ws)
	if markers {
		s.enqueueMarker(change.ReplayBegin, id, st.Reason, names, nil, s.opts.Now())
	}
	counts := map[string]int64{}
	for _, w := range ws {
		res := w.kind.Resource
		w.mu.Lock()
		now := s.opts.Now()
		seen := make(map[string]bool, len(w.emitted))
		for _, obj := range w.emitted {
			key := stateKey(res, obj)
			seen[key] = true
			uid := string(obj.GetUID())
			var saved resume.Entry
			had := false
			// Incarnations replaced under this name meanwhile are gone.
			for _, e := range opts.Saved[key] {
				if e.UID == uid {
					saved, had = e, true
					continue
				}
				s.emit(&change.Change{Kind: w.kind, Op: change.Deleted, Previous: remembered(obj, e), FinalStateUnknown: true, ObservedAt: now})
				st.Deleted[res]++
			}
			switch {
			case opts.Saved == nil && opts.Mode == SnapshotNever:
				if opts.Seed != nil {
					opts.Seed(key, resume.Entry{UID: uid, ResourceVersion: obj.GetResourceVersion()})
				}
			case full:
				s.emit(&change.Change{Kind: w.kind, Op: change.Snapshot, Object: obj, ReplayID: id, ObservedAt: now})
				st.Snapshots[res]++
			case !had || saved.ResourceVersion == "":
				// Unknown, or only intended: its create may not have gone out.
				s.emit(&change.Change{Kind: w.kind, Op: change.Created, Object: obj, ObservedAt: now})
				st.Created[res]++
			case saved.ResourceVersion != obj.GetResourceVersion():
				s.emit(&change.Change{Kind: w.kind, Op: change.Updated, Object: obj, PreviousUnknown: true, ObservedAt: now})
				st.Updated[res]++
			default:
				st.Equal[res]++
				// Nothing to send, but derivers (image-storage alert state)
				// learn the object as a restart found it, so an alert that
				// was firing does not fire again at the next heartbeat.
				prime := &change.Change{Kind: w.kind, Op: change.Snapshot, Object: obj, ObservedAt: now}
				for _, d := range s.opts.Derivers {
					_ = d.Derive(prime)
				}
			}
		}
		for key, entries := range opts.Saved {
			if seen[key] || !strings.HasPrefix(key, res+"/") {
				continue
			}
			ns, name := splitStateKey(key)
			for _, e := range entries {
				s.emit(&change.Change{Kind: w.kind, Op: change.Deleted, Previous: change.NewRemembered(ns, name, e.UID, e.ResourceVersion), FinalStateUnknown: true, ObservedAt: now})
				st.Deleted[res]++
			}
		}
		counts[res] = int64(len(w.emitted))
		w.active = true
		w.mu.Unlock()
	}
	if first && opts.Saved != nil && s.opts.Covers != nil {
		s.deleteVanishedKinds(opts.Saved, names, st)
	}
	if markers {
		s.enqueueMarker(change.ReplayEnd, id, st.Reason, names, counts, s.opts.Now())
	}
	return st
}

// deleteVanishedKinds deletes the saved objects of kinds the selection
// covers but the cluster no longer serves (a custom resource definition
// removed while kubestream was not running).
func (s *Source) deleteVanishedKinds(saved resume.Positions, watched []string, st ActivateStats) {
	isWatched := map[string]bool{}
	for _, n := range watched {
		isWatched[n] = true
	}
	now := s.opts.Now()
	for key, entries := range saved {
		res, _, _ := strings.Cut(key, "/")
		if isWatched[res] || res == kinds.ImageStorage || !s.opts.Covers(res) {
			continue
		}
		group, plural := kinds.SplitName(res)
		ns, name := splitStateKey(key)
		for _, e := range entries {
			// The entry names the kind's version and Kind (saved for kinds
			// outside the typed registry).
			version, kind, _ := strings.Cut(e.Kind, "/")
			k := kinds.Kind{Resource: res, Plural: plural, GVK: schema.GroupVersionKind{Group: group, Version: version, Kind: kind}}
			s.emit(&change.Change{Kind: k, Op: change.Deleted, Previous: change.NewRemembered(ns, name, e.UID, e.ResourceVersion), FinalStateUnknown: true, ObservedAt: now})
			st.Deleted[res]++
		}
	}
}

// AddKinds starts watching kinds while running (a custom resource
// definition created after start): their informers sync, then each gets a
// first round of its own, markers naming only them. saved are the
// positions held for them, if any (their deletes are sent).
func (s *Source) AddKinds(ctx context.Context, ks []kinds.Kind, saved resume.Positions) ([]SyncStat, error) {
	ws := make([]*watchedKind, 0, len(ks))
	for _, k := range ks {
		w, err := s.newWatched(k)
		if err != nil {
			return nil, err
		}
		ws = append(ws, w)
	}
	stats, err := s.startKinds(ctx, ws)
	if err != nil {
		for _, w := range ws {
			w.stop()
		}
		return nil, err
	}
	s.mu.Lock()
	s.watched = append(s.watched, ws...)
	s.mu.Unlock()
	st := s.activate(ctx, ws, ActivateOptions{Saved: saved}, false)
	klog.FromContext(ctx).Info("Watching new kinds", "kinds", kindNames(ws), "reason", st.Reason.String(), "snapshots", st.Snapshots, "deleted", st.Deleted)
	return stats, nil
}

// RemoveKind stops watching a kind the cluster no longer serves. Objects
// still held are reported deleted (final state unknown): usually none, as
// the apiserver deletes a definition's objects, and their deletes are
// watched, before the definition goes.
func (s *Source) RemoveKind(ctx context.Context, resource string) bool {
	s.mu.Lock()
	var w *watchedKind
	for i, c := range s.watched {
		if c.kind.Resource == resource {
			w = c
			s.watched = append(s.watched[:i:i], s.watched[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	if w == nil {
		return false
	}
	if w.stop != nil {
		w.stop()
	}
	_ = w.informer.RemoveEventHandler(w.reg)
	w.mu.Lock()
	defer w.mu.Unlock()
	now := s.opts.Now()
	n := 0
	if w.active {
		for _, obj := range w.emitted {
			s.emit(&change.Change{Kind: w.kind, Op: change.Deleted, Previous: obj, FinalStateUnknown: true, ObservedAt: now})
			n++
		}
	}
	w.removed, w.emitted = true, nil
	klog.FromContext(ctx).Info("Stopped watching a kind the cluster no longer serves", "kind", resource, "deletedObjects", n)
	return true
}

// SwitchVersion replaces a watched kind by the same resource at another
// version (a custom resource definition that stopped serving the watched
// one): the new version's informer syncs first, then the kind gets a round
// of its own with every object as a SNAPSHOT in the new version, and a
// DELETED only for objects the old version had and the new one has not. No
// object is reported deleted because its version changed.
func (s *Source) SwitchVersion(ctx context.Context, k kinds.Kind) error {
	s.mu.RLock()
	var old *watchedKind
	for _, w := range s.watched {
		if w.kind.Resource == k.Resource {
			old = w
		}
	}
	s.mu.RUnlock()
	if old == nil {
		return fmt.Errorf("switch %s to %s: not watched", k.Resource, k.GVK.Version)
	}
	nw, err := s.newWatched(k)
	if err != nil {
		return err
	}
	if _, err := s.startKinds(ctx, []*watchedKind{nw}); err != nil {
		nw.stop()
		return err
	}
	s.mu.Lock()
	for i, w := range s.watched {
		if w == old {
			s.watched[i] = nw
		}
	}
	s.mu.Unlock()
	if old.stop != nil {
		old.stop()
	}
	_ = old.informer.RemoveEventHandler(old.reg)
	old.mu.Lock()
	saved := make(resume.Positions, len(old.emitted))
	for _, obj := range old.emitted {
		key := stateKey(k.Resource, obj)
		saved[key] = append(saved[key], resume.Entry{UID: string(obj.GetUID()), ResourceVersion: obj.GetResourceVersion()})
	}
	old.removed, old.emitted = true, nil
	old.mu.Unlock()
	st := s.activate(ctx, []*watchedKind{nw}, ActivateOptions{Saved: saved, Mode: SnapshotAlways}, false)
	klog.FromContext(ctx).Info("Watching a kind at another version", "kind", k.Resource, "from", old.kind.GVK.Version, "to", k.GVK.Version,
		"snapshots", st.Snapshots, "deleted", st.Deleted)
	return nil
}

func kindNames(ws []*watchedKind) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.kind.Resource
	}
	return out
}

// stateKey is an object's key in the saved positions: resource/namespace/name.
func stateKey(resource string, o change.Object) string {
	return resource + "/" + o.GetNamespace() + "/" + o.GetName()
}

func splitStateKey(key string) (namespace, name string) {
	_, rest, _ := strings.Cut(key, "/")
	namespace, name, _ = strings.Cut(rest, "/")
	return namespace, name
}

func remembered(o change.Object, e resume.Entry) change.Object {
	return change.NewRemembered(o.GetNamespace(), o.GetName(), e.UID, e.ResourceVersion)
}

// Run is Start, then Activate with a full snapshot, then RunReplays, for a
// single process without saved positions. onSynced, when set, gets the
// initial lists' figures. It returns an error only when the initial sync
// fails.
func (s *Source) Run(ctx context.Context, onSynced func([]SyncStat)) error {
	stats, err := s.Start(ctx)
	if err != nil {
		return err
	}
	s.Activate(ctx, ActivateOptions{})
	if onSynced != nil {
		onSynced(stats)
	}
	s.RunReplays(ctx)
	return nil
}

// RunReplays runs replay rounds every Resync period until ctx ends, then
// stops the informers.
func (s *Source) RunReplays(ctx context.Context) {
	if s.opts.HeartbeatInterval > 0 {
		go s.runHeartbeats(ctx)
	}
	if s.opts.Resync <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(s.opts.Resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Replay(ctx, kubestreamv1.ReplayReason_REPLAY_REASON_RESYNC)
		}
	}
}

// Replay emits one round: a begin marker, a snapshot of every object as the
// handlers last emitted it, and an end marker with the counts. A round is
// skipped (and counted) while the previous round's markers are still
// undelivered: during a broker outage rounds would otherwise pile up, and
// the undelivered round already carries every object, with live changes
// behind it.
func (s *Source) Replay(ctx context.Context, reason kubestreamv1.ReplayReason) bool {
	logger := klog.FromContext(ctx)
	if mc, ok := s.opts.Queue.(markerCounter); ok {
		if n := mc.PendingMarkers(); n > 0 {
			s.skipped.Add(1)
			logger.Info("Skipping replay round: the previous round is not delivered yet", "undeliveredMarkers", n, "reason", reason.String())
			return false
		}
	}
	// Kinds still in their first round (just added) are not in this one.
	var ws []*watchedKind
	for _, w := range s.watchedNow() {
		w.mu.Lock()
		if w.active && !w.removed {
			ws = append(ws, w)
		}
		w.mu.Unlock()
	}
	id := newReplayID()
	names := kindNames(ws)
	s.enqueueMarker(change.ReplayBegin, id, reason, names, nil, s.opts.Now())
	counts := map[string]int64{}
	for _, w := range ws {
		counts[w.kind.Resource] = s.snapshotKind(w, id)
	}
	s.enqueueMarker(change.ReplayEnd, id, reason, names, counts, s.opts.Now())
	logger.Info("Replay round", "replayID", id, "reason", reason.String(), "objects", counts)
	return true
}

// replayChunk is how many snapshots a round enqueues per hold of a kind's
// lock: live changes of the kind wait for one chunk, not for the whole
// kind (100 000 pods take a second or more to enqueue).
const replayChunk = 1000

// snapshotKind enqueues a snapshot of every object of w as its handler last
// emitted it, and returns how many. The objects are taken chunk by chunk
// under the lock, each as emitted at that moment: an object changed before
// its chunk is snapshotted in its new state after its live change, one
// deleted is not snapshotted (its delete is out), one created since the
// round began is mentioned by its create.
func (s *Source) snapshotKind(w *watchedKind, id string) int64 {
	w.mu.Lock()
	keys := make([]string, 0, len(w.emitted))
	for key := range w.emitted {
		keys = append(keys, key)
	}
	w.mu.Unlock()
	chunk := replayChunk
	if s.chunk > 0 {
		chunk = s.chunk
	}
	var n int64
	for start := 0; start < len(keys); start += chunk {
		w.mu.Lock()
		if w.removed {
			// Removed meanwhile: its deletes are out, the end marker's
			// count says none are left.
			w.mu.Unlock()
			return 0
		}
		now := s.opts.Now()
		for _, key := range keys[start:min(start+chunk, len(keys))] {
			if obj, ok := w.emitted[key]; ok {
				s.emit(&change.Change{Kind: w.kind, Op: change.Snapshot, Object: obj, ReplayID: id, ObservedAt: now})
				n++
			}
		}
		w.mu.Unlock()
		if s.afterChunk != nil {
			s.afterChunk()
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.removed {
		return 0
	}
	return n
}

// SkippedRounds counts replay rounds skipped because the previous one was
// still undelivered.
func (s *Source) SkippedRounds() uint64 { return s.skipped.Load() }

func (s *Source) enqueueMarker(op change.Op, id string, reason kubestreamv1.ReplayReason, names []string, counts map[string]int64, now time.Time) {
	s.opts.Queue.Enqueue(&change.Change{
		Op:         op,
		ReplayID:   id,
		Replay:     &change.Replay{Reason: reason, Kinds: names, Counts: counts},
		ObservedAt: now,
	})
}

// emit enqueues a change and what derivers make of it.
func (s *Source) emit(c *change.Change) {
	s.opts.Queue.Enqueue(c)
	for _, d := range s.opts.Derivers {
		for _, dc := range d.Derive(c) {
			s.opts.Queue.Enqueue(dc)
		}
	}
}

func newReplayID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// handler turns informer notifications into changes. It never blocks beyond
// a replay round of its own kind holding mu.
type handler struct {
	s *Source
	w *watchedKind
}

func (h *handler) OnAdd(obj any, isInInitialList bool) {
	o, ok := obj.(change.Object)
	if !ok {
		return
	}
	c := &change.Change{Kind: h.w.kind, Op: change.Created, Object: o, ObservedAt: h.s.opts.Now()}
	key := objectKey(o)
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	if h.w.removed {
		return
	}
	if !h.w.active {
		// The initial list (or a standby's view): the first round sends it.
		h.w.emitted[key] = o
		return
	}
	// A name that comes back with another uid and no delete in between: the
	// old uid is gone.
	if old, ok := h.w.emitted[key]; ok && old.GetUID() != o.GetUID() {
		h.s.emit(&change.Change{Kind: h.w.kind, Op: change.Deleted, Previous: old, FinalStateUnknown: true, ObservedAt: c.ObservedAt})
	}
	h.w.emitted[key] = o
	h.s.emit(c)
}

func (h *handler) OnUpdate(oldObj, newObj any) {
	prev, ok1 := oldObj.(change.Object)
	next, ok2 := newObj.(change.Object)
	if !ok1 || !ok2 {
		return
	}
	// Same resourceVersion: a relist that found the object unchanged. Not a
	// change; replays are emitted as rounds of their own. The cache holds
	// the relisted copy now: the handlers' view takes it too, so the two
	// do not keep a copy each.
	if prev.GetResourceVersion() == next.GetResourceVersion() {
		h.w.mu.Lock()
		if key := objectKey(next); h.w.emitted[key] == prev {
			h.w.emitted[key] = next
			change.Retire(prev)
		}
		h.w.mu.Unlock()
		return
	}
	now := h.s.opts.Now()
	key := objectKey(next)
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	if h.w.removed {
		return
	}
	h.w.emitted[key] = next
	change.Retire(prev)
	if !h.w.active {
		return
	}
	// A relist after a watch gap reports a name deleted and re-created
	// meanwhile as an update across two uids: it is a delete and a create.
	if prev.GetUID() != next.GetUID() {
		h.s.emit(&change.Change{Kind: h.w.kind, Op: change.Deleted, Previous: prev, FinalStateUnknown: true, ObservedAt: now})
		h.s.emit(&change.Change{Kind: h.w.kind, Op: change.Created, Object: next, ObservedAt: now})
		return
	}
	if h.ignored(prev, next, now) {
		return
	}
	h.s.emit(&change.Change{Kind: h.w.kind, Op: change.Updated, Object: next, Previous: prev, ObservedAt: now})
}

func (h *handler) OnDelete(obj any) {
	c := &change.Change{Kind: h.w.kind, Op: change.Deleted, ObservedAt: h.s.opts.Now()}
	switch o := obj.(type) {
	case cache.DeletedFinalStateUnknown:
		// The watch missed the delete (a gap and a relist): the last state we
		// had is all there is.
		final, ok := o.Obj.(change.Object)
		if !ok {
			return
		}
		c.Previous, c.FinalStateUnknown = final, true
	case change.Object:
		c.Previous = o
	default:
		return
	}
	key := objectKey(c.Previous)
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	if h.w.removed {
		return
	}
	if cur, ok := h.w.emitted[key]; ok && cur.GetUID() == c.Previous.GetUID() {
		delete(h.w.emitted, key)
	}
	change.Retire(c.Previous)
	if !h.w.active {
		return
	}
	h.s.emit(c)
}

// objectKey is namespace/name, the informer's key.
func objectKey(o change.Object) string {
	if ns := o.GetNamespace(); ns != "" {
		return ns + "/" + o.GetName()
	}
	return o.GetName()
}
