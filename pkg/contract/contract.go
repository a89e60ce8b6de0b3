// Package contract is the consumer contract as code: a State applies
// kubestream events exactly as docs/contract.md says a consumer must, and
// then holds the objects that exist, by uid. kubestream's own tests judge
// the stream with it; a Go consumer may use it as it is.
//
// The contract, for one ordered stream (a Kafka partition, a JetStream
// subject filter, the stdout sink's lines):
//
//  1. CREATED, UPDATED and SNAPSHOT upsert the object by uid; DELETED
//     removes it. Image-storage events carry no object state and are ignored.
//  2. REPLAY_BEGIN opens a round: remember the uids held of the kinds it
//     covers. Every object event after it marks its uid as mentioned.
//  3. REPLAY_END closes the round: remove every remembered uid that was not
//     mentioned since its REPLAY_BEGIN, unless its key is in the marker's
//     pending_keys or the marker says pending_keys_truncated. A REPLAY_END
//     whose REPLAY_BEGIN this consumer did not see removes nothing, and so
//     does a resume round (reason REPLAY_REASON_RESUME): it sends only what
//     changed while kubestream was down.
//
// HEARTBEAT events carry no object state either: a consumer keeps none from
// them. State remembers the latest per kind (Watermark) for those that want
// to know how complete their state is, or whether the stream stalled.
//
// Applying an event twice (a redelivery) is harmless; events can be
// deduplicated by id.
package contract

import (
	"sort"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// Object is one object a State holds.
type Object struct {
	// Key is resource/namespace/name (namespace empty for cluster-scoped
	// kinds), the form of ReplayMarker.pending_keys.
	Key             string
	UID             string
	ResourceVersion string
	// Event is the last event applied to the object.
	Event *kubestreamv1.Event
}

// State applies the contract to one ordered stream.
type State struct {
	objects map[string]*Object // by uid
	rounds  map[string]*round  // open rounds by replay id
	deleted map[string]bool    // uids that got a DELETED
	dropped []string           // uids removed by a REPLAY_END
	// watermarks are the latest heartbeat per kind.
	watermarks map[string]*kubestreamv1.Heartbeat
}

type round struct {
	kinds     map[string]bool
	before    map[string]bool // uids held at REPLAY_BEGIN, of the covered kinds
	mentioned map[string]bool
}

// New returns an empty state.
func New() *State {
	return &State{objects: map[string]*Object{}, rounds: map[string]*round{}, deleted: map[string]bool{},
		watermarks: map[string]*kubestreamv1.Heartbeat{}}
}

// Watermark returns the latest heartbeat of a kind ("pods") applied, nil if
// none: the stream held every change of the kind up to its
// resource_version, except its pending_keys (docs/contract.md).
func (s *State) Watermark(resource string) *kubestreamv1.Heartbeat { return s.watermarks[resource] }

// Key returns the key of an event's object: resource/namespace/name.
func Key(ev *kubestreamv1.Event) string {
	o := ev.GetObject()
	return o.GetResource() + "/" + o.GetNamespace() + "/" + o.GetName()
}

// EffectType says what applying an event did to a State.
type EffectType int

const (
	// Upserted: a CREATED, UPDATED or SNAPSHOT stored Object; Previous is
	// what was held under the uid before, nil when the uid is new.
	Upserted EffectType = iota + 1
	// Deleted: a DELETED removed Object (nil when the uid was not held).
	Deleted
	// Dropped: a REPLAY_END removed Object, which the round did not mention.
	Dropped
	// RoundEnded: a REPLAY_END closed a round; Complete says whether this
	// state saw the round from its REPLAY_BEGIN.
	RoundEnded
)

// Effect is one consequence of applying an event.
type Effect struct {
	Type     EffectType
	Object   *Object
	Previous *Object
	// Reason and Complete are set on RoundEnded.
	Reason   kubestreamv1.ReplayReason
	Complete bool
}

// Apply applies one event.
func (s *State) Apply(ev *kubestreamv1.Event) { s.Step(ev) }

// Step applies one event and returns what it did, in order: the upsert or
// delete of an object event; for a REPLAY_END, the objects it dropped and
// then the RoundEnded effect. Image-storage events and heartbeats return
// nothing (a heartbeat is kept as the kind's watermark).
func (s *State) Step(ev *kubestreamv1.Event) []Effect {
	switch ev.GetOperation() {
	case kubestreamv1.Operation_OPERATION_REPLAY_BEGIN:
		s.begin(ev.GetReplay())
		return nil
	case kubestreamv1.Operation_OPERATION_REPLAY_END:
		return s.end(ev.GetReplay())
	case kubestreamv1.Operation_OPERATION_HEARTBEAT:
		if hb := ev.GetHeartbeat(); hb != nil {
			s.watermarks[hb.GetResource()] = hb
		}
		return nil
	}
	if ev.GetImageStorage() != nil || ev.GetObject() == nil {
		return nil
	}
	uid := ev.GetObject().GetUid()
	for _, r := range s.rounds {
		r.mentioned[uid] = true
	}
	switch ev.GetOperation() {
	case kubestreamv1.Operation_OPERATION_CREATED, kubestreamv1.Operation_OPERATION_UPDATED, kubestreamv1.Operation_OPERATION_SNAPSHOT:
		prev := s.objects[uid]
		o := &Object{Key: Key(ev), UID: uid, ResourceVersion: ev.GetObject().GetResourceVersion(), Event: ev}
		s.objects[uid] = o
		return []Effect{{Type: Upserted, Object: o, Previous: prev}}
	case kubestreamv1.Operation_OPERATION_DELETED:
		prev := s.objects[uid]
		delete(s.objects, uid)
		s.deleted[uid] = true
		return []Effect{{Type: Deleted, Object: prev}}
	}
	return nil
}

func (s *State) begin(m *kubestreamv1.ReplayMarker) {
	r := &round{kinds: map[string]bool{}, before: map[string]bool{}, mentioned: map[string]bool{}}
	for _, k := range m.GetKinds() {
		r.kinds[k] = true
	}
	for uid, o := range s.objects {
		if r.kinds[o.Event.GetObject().GetResource()] {
			r.before[uid] = true
		}
	}
	s.rounds[m.GetReplayId()] = r
}

func (s *State) end(m *kubestreamv1.ReplayMarker) []Effect {
	ended := Effect{Type: RoundEnded, Reason: m.GetReason()}
	r, ok := s.rounds[m.GetReplayId()]
	if !ok {
		return []Effect{ended}
	}
	ended.Complete = true
	delete(s.rounds, m.GetReplayId())
	if m.GetPendingKeysTruncated() || m.GetReason() == kubestreamv1.ReplayReason_REPLAY_REASON_RESUME {
		return []Effect{ended}
	}
	pending := map[string]bool{}
	for _, k := range m.GetPendingKeys() {
		pending[k] = true
	}
	// Sorted, so handlers see drops in the same order on every run.
	before := make([]string, 0, len(r.before))
	for uid := range r.before {
		before = append(before, uid)
	}
	sort.Strings(before)
	var out []Effect
	for _, uid := range before {
		o, held := s.objects[uid]
		if !held || r.mentioned[uid] || pending[o.Key] {
			continue
		}
		delete(s.objects, uid)
		s.dropped = append(s.dropped, uid)
		out = append(out, Effect{Type: Dropped, Object: o})
	}
	return append(out, ended)
}

// Objects returns the objects held, by uid.
func (s *State) Objects() map[string]Object {
	out := make(map[string]Object, len(s.objects))
	for uid, o := range s.objects {
		out[uid] = *o
	}
	return out
}

// Deleted reports whether a DELETED was applied for uid.
func (s *State) Deleted(uid string) bool { return s.deleted[uid] }

// Dropped returns the uids REPLAY_END markers removed (gone without a
// DELETED in this stream), in the order they were removed.
func (s *State) Dropped() []string { return append([]string(nil), s.dropped...) }

// Streams applies the contract to several ordered streams at once (the
// partitions of Kafka topics) and answers for their union.
type Streams struct {
	streams map[string]*State
}

// NewStreams returns an empty set of streams.
func NewStreams() *Streams { return &Streams{streams: map[string]*State{}} }

// Apply applies ev to the named stream (for Kafka: topic and partition).
func (m *Streams) Apply(stream string, ev *kubestreamv1.Event) {
	s := m.streams[stream]
	if s == nil {
		s = New()
		m.streams[stream] = s
	}
	s.Apply(ev)
}

// Objects returns the objects held by any stream, by uid.
func (m *Streams) Objects() map[string]Object {
	out := map[string]Object{}
	for _, s := range m.streams {
		for uid, o := range s.objects {
			out[uid] = *o
		}
	}
	return out
}

// Deleted reports whether any stream applied a DELETED for uid.
func (m *Streams) Deleted(uid string) bool {
	for _, s := range m.streams {
		if s.deleted[uid] {
			return true
		}
	}
	return false
}

// Dropped returns the uids REPLAY_END markers removed in any stream.
func (m *Streams) Dropped() []string {
	var out []string
	for _, s := range m.streams {
		out = append(out, s.dropped...)
	}
	sort.Strings(out)
	return out
}
