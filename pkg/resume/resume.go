// Package resume remembers, for every object incarnation (key and uid)
// consumers may have seen, the resourceVersion of the last event the broker
// acknowledged, in a Store that lives where the events go, so a restarted
// process or another replica sends the difference instead of the whole
// cluster again, including the deletes that happened meanwhile.
//
// Two writes keep it exact under crashes:
//   - Before the first event of an incarnation is published, an intent
//     (its uid, no resourceVersion) is written and waited for (Intend): a
//     uid a consumer may have seen is always in the store, so its delete
//     is never missed, even when the process dies right after the publish.
//   - After events are acknowledged (ack before advance), their positions
//     are written in batches (Acknowledged, Flush); an acknowledged delete
//     removes its entry, so the store holds one entry per live object.
//
// A crash between an ack and the next flush costs duplicates on restart
// (the diff re-sends what the lost flush would have recorded), never a lost
// change.
package resume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/contract"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// ErrNoStore is returned (wrapped) by a sink whose configuration has no
// place for state, such as core NATS without JetStream.
var ErrNoStore = errors.New("the sink has no place for state")

// ErrMisconfigured marks a store error only the user can fix (a missing or
// wrongly configured topic or bucket): start-up then fails with exit code 2.
var ErrMisconfigured = errors.New("state store misconfigured")

// Misconfigured marks err as one only the user can fix; its message is err's.
func Misconfigured(err error) error { return misconfigured{err} }

type misconfigured struct{ error }

func (m misconfigured) Unwrap() error        { return m.error }
func (m misconfigured) Is(target error) bool { return target == ErrMisconfigured }

// FormatVersion is the version of the saved entries' encoding.
const FormatVersion = 1

// Entry is the acknowledged position of one object.
type Entry struct {
	UID             string `json:"uid"`
	ResourceVersion string `json:"rv"`
	// Kind is "<version>/<Kind>" for kinds outside the typed registry
	// (custom resources), so the delete of an object whose kind is gone by
	// the next start still names its version and kind.
	Kind string `json:"kind,omitempty"`
}

// record is an entry as stored: {"v":1,"uid":"...","rv":"..."}.
type record struct {
	V int `json:"v"`
	Entry
}

// Encode returns an entry's stored form.
func Encode(e Entry) []byte {
	b, _ := json.Marshal(record{V: FormatVersion, Entry: e})
	return b
}

// Decode reads an entry's stored form.
func Decode(b []byte) (Entry, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return Entry{}, fmt.Errorf("decode saved position: %w", err)
	}
	if r.V != FormatVersion {
		return Entry{}, fmt.Errorf("saved position has format version %d, this kubestream reads %d", r.V, FormatVersion)
	}
	if r.UID == "" {
		return Entry{}, fmt.Errorf("saved position without a uid")
	}
	return r.Entry, nil
}

// Store keeps the positions of one cluster. Its keys are opaque strings
// (StoreKey: resource/namespace/name/uid); later writes win, deletes remove.
type Store interface {
	// Load returns every saved entry by store key.
	Load(ctx context.Context) (map[string]Entry, error)
	// Write saves puts and removes deletes, durably, before it returns.
	Write(ctx context.Context, puts map[string]Entry, deletes []string) error
	// Close releases the store's connections.
	Close() error
}

// StoreKey is the store key of one incarnation: objectKey/uid.
func StoreKey(objectKey, uid string) string { return objectKey + "/" + uid }

// SplitStoreKey returns the object key and the uid of a store key.
func SplitStoreKey(k string) (objectKey, uid string, ok bool) {
	i := strings.LastIndexByte(k, '/')
	if i < 0 {
		return "", "", false
	}
	return k[:i], k[i+1:], true
}

// Positions are the saved incarnations by object key. An entry without a
// resourceVersion is an intent: its first event may or may not have been
// published.
type Positions map[string][]Entry

// Tracker records intents and acknowledged positions and writes them to a
// Store.
type Tracker struct {
	store    Store
	interval time.Duration

	mu      sync.Mutex
	puts    map[string]Entry
	deletes map[string]struct{}
	// known are the store keys written (or loaded) and not removed: a uid
	// among them needs no intent.
	known map[string]struct{}
	// flushMu serializes writes, so an older batch never lands after a
	// newer one, and intents land before the acks of their events.
	flushMu sync.Mutex

	written, intents, flushes, failures atomic.Uint64
}

// NewTracker returns a tracker writing to store every interval (default 1s).
func NewTracker(store Store, interval time.Duration) *Tracker {
	if interval <= 0 {
		interval = time.Second
	}
	return &Tracker{store: store, interval: interval, puts: map[string]Entry{}, deletes: map[string]struct{}{}, known: map[string]struct{}{}}
}

// Load reads the saved positions (and remembers them as known).
func (t *Tracker) Load(ctx context.Context) (Positions, error) {
	raw, err := t.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	out := Positions{}
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, e := range raw {
		key, uid, ok := SplitStoreKey(k)
		if !ok || uid != e.UID {
			continue
		}
		out[key] = append(out[key], e)
		t.known[k] = struct{}{}
	}
	return out, nil
}

// objectEvent reports whether ev is about an object's state (not a marker,
// not a derived image-storage event).
func objectEvent(ev *kubestreamv1.Event) bool {
	return ev.GetObject() != nil && ev.GetImageStorage() == nil && ev.GetReplay() == nil
}

// Intend writes an intent for every incarnation among events that the store
// does not know yet, and returns once they are durable: call it before
// publishing the events.
func (t *Tracker) Intend(ctx context.Context, events []*kubestreamv1.Event) error {
	var puts map[string]Entry
	t.mu.Lock()
	for _, ev := range events {
		if !objectEvent(ev) || ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED {
			continue
		}
		uid := ev.GetObject().GetUid()
		k := StoreKey(contract.Key(ev), uid)
		if _, ok := t.known[k]; ok {
			continue
		}
		if puts == nil {
			puts = map[string]Entry{}
		}
		puts[k] = Entry{UID: uid, Kind: kindOf(ev)}
	}
	t.mu.Unlock()
	if len(puts) == 0 {
		return nil
	}
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	if err := t.store.Write(ctx, puts, nil); err != nil {
		t.failures.Add(1)
		return fmt.Errorf("save %d intents before publishing: %w", len(puts), err)
	}
	t.mu.Lock()
	for k := range puts {
		t.known[k] = struct{}{}
	}
	t.mu.Unlock()
	t.intents.Add(uint64(len(puts)))
	return nil
}

// kindOf is an entry's Kind: set only for kinds the typed registry does
// not know, which are the ones that can vanish with their definition.
func kindOf(ev *kubestreamv1.Event) string {
	o := ev.GetObject()
	if _, typed := kinds.ByResource(o.GetResource()); typed || o.GetKind() == "" {
		return ""
	}
	return o.GetVersion() + "/" + o.GetKind()
}

// Acknowledged records an acknowledged event. It is cheap: it runs on the
// pipeline's workers.
func (t *Tracker) Acknowledged(ev *kubestreamv1.Event) {
	if !objectEvent(ev) {
		return
	}
	k := StoreKey(contract.Key(ev), ev.GetObject().GetUid())
	t.mu.Lock()
	defer t.mu.Unlock()
	switch ev.GetOperation() {
	case kubestreamv1.Operation_OPERATION_CREATED, kubestreamv1.Operation_OPERATION_UPDATED, kubestreamv1.Operation_OPERATION_SNAPSHOT:
		if _, gone := t.deletes[k]; gone {
			return // a redelivered upsert after the uid's delete
		}
		t.puts[k] = Entry{UID: ev.GetObject().GetUid(), ResourceVersion: ev.GetObject().GetResourceVersion(), Kind: kindOf(ev)}
	case kubestreamv1.Operation_OPERATION_DELETED:
		delete(t.puts, k)
		t.deletes[k] = struct{}{}
	}
}

// Seed records a position that needs no event (objects listed while no
// snapshot is sent), as if acknowledged.
func (t *Tracker) Seed(objectKey string, e Entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.puts[StoreKey(objectKey, e.UID)] = e
}

// Run flushes every interval until ctx ends. Call Flush after it returns to
// write what is left.
func (t *Tracker) Run(ctx context.Context) {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := t.Flush(ctx); err != nil && ctx.Err() == nil {
				klog.FromContext(ctx).Error(err, "Saving acknowledged positions failed; retrying at the next flush")
			}
		}
	}
}

// Flush writes what was recorded since the last flush. On failure the batch
// is kept (newer records win) for the next flush.
func (t *Tracker) Flush(ctx context.Context) error {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	t.mu.Lock()
	puts, deletes := t.puts, t.deletes
	if len(puts) == 0 && len(deletes) == 0 {
		t.mu.Unlock()
		return nil
	}
	t.puts, t.deletes = map[string]Entry{}, map[string]struct{}{}
	t.mu.Unlock()
	dels := make([]string, 0, len(deletes))
	for k := range deletes {
		dels = append(dels, k)
	}
	if err := t.store.Write(ctx, puts, dels); err != nil {
		t.failures.Add(1)
		t.mu.Lock()
		for k, e := range puts {
			if _, newer := t.puts[k]; !newer {
				if _, gone := t.deletes[k]; !gone {
					t.puts[k] = e
				}
			}
		}
		for k := range deletes {
			t.deletes[k] = struct{}{}
			delete(t.puts, k)
		}
		t.mu.Unlock()
		return fmt.Errorf("save %d positions and %d removals: %w", len(puts), len(dels), err)
	}
	t.mu.Lock()
	for k := range puts {
		t.known[k] = struct{}{}
	}
	for _, k := range dels {
		delete(t.known, k)
	}
	t.mu.Unlock()
	t.flushes.Add(1)
	t.written.Add(uint64(len(puts) + len(dels)))
	return nil
}

// Stats are the tracker's counters.
type Stats struct {
	Written, Intents, Flushes, Failures uint64
	// Known is the number of incarnations in the store.
	Known int
}

// Stats returns the counters.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	known := len(t.known)
	t.mu.Unlock()
	return Stats{Written: t.written.Load(), Intents: t.intents.Load(), Flushes: t.flushes.Load(), Failures: t.failures.Load(), Known: known}
}
