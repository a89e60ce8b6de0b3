package consumer

import (
	"context"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/contract"
)

// DefaultDedupeWindow is how many recent event ids each stream remembers
// to drop redeliveries.
const DefaultDedupeWindow = 100000

// Options configure a Store.
type Options struct {
	// DedupeWindow is how many recent event ids each stream remembers
	// (two generations of this size); 0 means DefaultDedupeWindow.
	DedupeWindow int
	// OnEvent, when set, sees every event that is not a redelivery, before
	// the store applies it: replay markers and image-storage events too
	// (which change no object). It runs under the same ordering as handlers.
	OnEvent func(stream string, ev *kubestreamv1.Event)
}

// Stats count what a Store was given.
type Stats struct {
	// Applied events (markers and image-storage events included).
	Applied int64
	// Duplicates dropped by id.
	Duplicates int64
}

// Store holds the objects a stream describes, per cluster (Event.cluster).
// It is safe for concurrent use; Apply calls are serialised.
type Store struct {
	opts Options

	applyMu sync.Mutex // one Apply (and its handlers) at a time

	mu       sync.RWMutex
	streams  map[streamID]*stream
	clusters map[string]*cluster
	handlers []Handler
	stats    Stats
	synced   chan struct{} // closed the first time HasSynced is true
	// backlog says, per stream a reader announced, whether its backlog
	// was read (see Expect).
	backlog map[string]bool
}

// streamID names one ordered stream of one cluster: the contract's rounds
// are per producer and per stream.
type streamID struct{ cluster, name string }

type stream struct {
	rule   *contract.State
	ids    *idSet
	synced bool
}

type cluster struct {
	byUID map[string]entry
	// byKey lists the uids held under resource/namespace/name, latest last
	// (two while a re-created object's old uid awaits its removal).
	byKey map[string][]string
}

type entry struct {
	obj    *Object
	stream string
}

// NewStore returns an empty store.
func NewStore(opts Options) *Store {
	if opts.DedupeWindow <= 0 {
		opts.DedupeWindow = DefaultDedupeWindow
	}
	return &Store{opts: opts, streams: map[streamID]*stream{}, clusters: map[string]*cluster{}, synced: make(chan struct{}), backlog: map[string]bool{}}
}

// AddHandler adds h; it sees changes applied from now on. Add handlers
// before the reader starts to see every object.
func (s *Store) AddHandler(h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers = append(s.handlers, h)
}

// Expect tells the store that a reader will deliver the backlog of the
// named stream (a Kafka partition's records up to its end at start): the
// store is not synced before CaughtUp(stream). Readers of this package call
// it through Run; without it, a stream whose first record has not arrived
// yet cannot hold back HasSynced.
func (s *Store) Expect(streamName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.backlog[streamName]; !ok {
		s.backlog[streamName] = false
	}
}

// CaughtUp tells the store that the named stream's backlog was delivered.
func (s *Store) CaughtUp(streamName string) {
	s.mu.Lock()
	s.backlog[streamName] = true
	s.closeSyncedLocked()
	s.mu.Unlock()
}

func (s *Store) closeSyncedLocked() {
	if s.hasSyncedLocked() {
		select {
		case <-s.synced:
		default:
			close(s.synced)
		}
	}
}

// notification is one handler call, made after the store's lock is released.
type notification struct {
	op       contract.EffectType
	old, new *Object
	initial  bool
}

// Apply applies one event read from the named ordered stream (a Kafka
// topic/partition, a JetStream stream) and runs the handlers. It reports
// false for a redelivery (an id this stream applied recently), which
// changes nothing.
func (s *Store) Apply(streamName string, ev *kubestreamv1.Event) bool {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	id := streamID{ev.GetCluster(), streamName}

	s.mu.Lock()
	st := s.streams[id]
	if st == nil {
		st = &stream{rule: contract.New(), ids: newIDSet(s.opts.DedupeWindow)}
		s.streams[id] = st
	}
	if ev.GetId() != "" && !st.ids.add(ev.GetId()) {
		s.stats.Duplicates++
		s.mu.Unlock()
		return false
	}
	s.stats.Applied++
	s.mu.Unlock()

	if s.opts.OnEvent != nil {
		s.opts.OnEvent(streamName, ev)
	}

	s.mu.Lock()
	c := s.clusters[id.cluster]
	if c == nil {
		c = &cluster{byUID: map[string]entry{}, byKey: map[string][]string{}}
		s.clusters[id.cluster] = c
	}
	var notes []notification
	for _, eff := range st.rule.Step(ev) {
		switch eff.Type {
		case contract.Upserted:
			obj := newObject(ev, false)
			old, held := c.byUID[obj.UID]
			c.put(obj, streamName)
			if held {
				notes = append(notes, notification{op: contract.Upserted, old: old.obj, new: obj})
			} else {
				notes = append(notes, notification{op: contract.Upserted, new: obj, initial: ev.GetOperation() == kubestreamv1.Operation_OPERATION_SNAPSHOT})
			}
		case contract.Deleted:
			obj := newObject(ev, true)
			if old, held := c.byUID[obj.UID]; held {
				obj = obj.withStateOf(old.obj)
				c.remove(obj.UID)
			}
			notes = append(notes, notification{op: contract.Deleted, old: obj})
		case contract.Dropped:
			if old, held := c.byUID[eff.Object.UID]; held && old.stream == streamName {
				c.remove(eff.Object.UID)
				notes = append(notes, notification{op: contract.Deleted, old: old.obj.inferredGone()})
			}
		case contract.RoundEnded:
			if eff.Complete {
				st.synced = true
			}
		}
	}
	handlers := s.handlers
	s.closeSyncedLocked()
	s.mu.Unlock()

	for _, n := range notes {
		for _, h := range handlers {
			switch {
			case n.op == contract.Deleted:
				h.OnDelete(n.old)
			case n.old != nil:
				h.OnUpdate(n.old, n.new)
			default:
				h.OnAdd(n.new, n.initial)
			}
		}
	}
	return true
}

func (c *cluster) put(obj *Object, streamName string) {
	key := obj.Key()
	if old, held := c.byUID[obj.UID]; held && old.obj.Key() != key {
		c.unkey(old.obj.Key(), obj.UID)
	}
	c.byUID[obj.UID] = entry{obj: obj, stream: streamName}
	uids := c.byKey[key]
	for i, u := range uids {
		if u == obj.UID {
			uids = append(uids[:i], uids[i+1:]...)
			break
		}
	}
	c.byKey[key] = append(uids, obj.UID)
}

func (c *cluster) remove(uid string) {
	old, held := c.byUID[uid]
	if !held {
		return
	}
	delete(c.byUID, uid)
	c.unkey(old.obj.Key(), uid)
}

func (c *cluster) unkey(key, uid string) {
	uids := c.byKey[key]
	for i, u := range uids {
		if u == uid {
			uids = append(uids[:i:i], uids[i+1:]...)
			break
		}
	}
	if len(uids) == 0 {
		delete(c.byKey, key)
	} else {
		c.byKey[key] = uids
	}
}

// Get returns the object of a cluster under resource, namespace ("" for
// cluster-scoped kinds) and name. resource is the name on the wire
// (ObjectRef.resource: "pods", "certificates.cert-manager.io"), or the
// plural alone, or plural.group for a typed kind ("deployments.apps").
func (s *Store) Get(clusterName, resource, namespace, name string) (*Object, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.clusters[clusterName]
	if c == nil {
		return nil, false
	}
	if uids := c.byKey[resource+"/"+namespace+"/"+name]; len(uids) > 0 {
		return c.byUID[uids[len(uids)-1]].obj, true
	}
	var found *Object
	for _, e := range c.byUID {
		if o := e.obj; o.Namespace == namespace && o.Name == name && matchesResource(o, resource) {
			found = o // several only for a re-create whose delete is missing: any will do
		}
	}
	return found, found != nil
}

// matchesResource reports whether o is of the resource a caller named: its
// name on the wire, its plural alone, or plural.group.
func matchesResource(o *Object, resource string) bool {
	if o.Resource == resource {
		return true
	}
	plural, _, _ := strings.Cut(o.Resource, ".")
	want, group, hasGroup := strings.Cut(resource, ".")
	return plural == want && (!hasGroup || o.Group == group)
}

// List returns the objects of resource (as Get names it) in a cluster (""
// for every cluster) whose labels match selector (nil matches all),
// sorted by cluster, namespace and name.
func (s *Store) List(clusterName, resource string, selector labels.Selector) []*Object {
	return s.ListInNamespace(clusterName, resource, "", selector)
}

// ListInNamespace is List restricted to one namespace ("" for all).
func (s *Store) ListInNamespace(clusterName, resource, namespace string, selector labels.Selector) []*Object {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Object
	for name, c := range s.clusters {
		if clusterName != "" && name != clusterName {
			continue
		}
		for _, e := range c.byUID {
			o := e.obj
			if !matchesResource(o, resource) || namespace != "" && o.Namespace != namespace {
				continue
			}
			if selector != nil && !selector.Matches(labels.Set(o.Labels)) {
				continue
			}
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Cluster != b.Cluster {
			return a.Cluster < b.Cluster
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.UID < b.UID
	})
	return out
}

// Clusters returns the names of the clusters the store has seen events of.
func (s *Store) Clusters() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.clusters))
	for name := range s.clusters {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Synced reports whether the readers delivered the backlog of every stream
// they announced (see Expect), and every stream that carried events of the
// cluster has applied a complete replay round: a REPLAY_END whose
// REPLAY_BEGIN this store saw (an initial, periodic or resume round). The
// store then holds the cluster's objects as of that round, and follows
// live changes since.
func (s *Store) Synced(clusterName string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.syncedLocked(clusterName)
}

func (s *Store) syncedLocked(clusterName string) bool {
	for _, read := range s.backlog {
		if !read {
			return false
		}
	}
	seen := false
	for id, st := range s.streams {
		if id.cluster != clusterName {
			continue
		}
		if !st.synced {
			return false
		}
		seen = true
	}
	return seen
}

// HasSynced reports whether at least one cluster was seen and every one
// seen is Synced.
func (s *Store) HasSynced() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hasSyncedLocked()
}

func (s *Store) hasSyncedLocked() bool {
	if len(s.clusters) == 0 {
		return false
	}
	for name := range s.clusters {
		if !s.syncedLocked(name) {
			return false
		}
	}
	return true
}

// WaitForSync blocks until HasSynced was true once, or ctx ends.
func (s *Store) WaitForSync(ctx context.Context) error {
	select {
	case <-s.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns what the store was given so far.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.stats
}

// Objects returns every object held of the cluster, by uid.
func (s *Store) Objects(clusterName string) map[string]*Object {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.clusters[clusterName]
	if c == nil {
		return map[string]*Object{}
	}
	out := make(map[string]*Object, len(c.byUID))
	for uid, e := range c.byUID {
		out[uid] = e.obj
	}
	return out
}

// Deleted reports whether a stream of the cluster applied a DELETED for
// uid, and Dropped returns the uids its replay rounds removed: the judge's
// view of the contract (pkg/contract.State.Deleted, Dropped).
func (s *Store) Deleted(clusterName, uid string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for id, st := range s.streams {
		if id.cluster == clusterName && st.rule.Deleted(uid) {
			return true
		}
	}
	return false
}

// Dropped returns the uids replay rounds of the cluster removed, sorted.
func (s *Store) Dropped(clusterName string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for id, st := range s.streams {
		if id.cluster == clusterName {
			out = append(out, st.rule.Dropped()...)
		}
	}
	sort.Strings(out)
	return out
}
