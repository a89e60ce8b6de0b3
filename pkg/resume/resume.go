// Package resume remembers, for every object, the position (uid and
// resourceVersion) of the last event the broker acknowledged, in a Store
// that lives where the events go, so a restarted process or another replica
// sends the difference instead of the whole cluster again.
//
// The state is written only after the events' acks (ack before advance), in
// batches, one entry per live object: a delete removes its entry. A crash
// between an ack and the next flush costs duplicates on restart (the diff
// re-sends what the lost flush would have recorded), never a lost change.
package resume

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// FormatVersion is the version of the saved entries' encoding.
const FormatVersion = 1

// Entry is the acknowledged position of one object.
type Entry struct {
	UID             string `json:"uid"`
	ResourceVersion string `json:"rv"`
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

// Store keeps the positions of one cluster. Keys are object keys,
// resource/namespace/name (the Kafka record key of the object's events).
type Store interface {
	// Load returns every saved position.
	Load(ctx context.Context) (map[string]Entry, error)
	// Write saves puts and removes deletes, durably, before it returns.
	Write(ctx context.Context, puts map[string]Entry, deletes []string) error
	// Close releases the store's connections.
	Close() error
}

// Key returns the object key of an event: resource/namespace/name.
func Key(ev *kubestreamv1.Event) string {
	o := ev.GetObject()
	return o.GetResource() + "/" + o.GetNamespace() + "/" + o.GetName()
}

// Tracker collects acknowledged positions and writes them to a Store in
// batches.
type Tracker struct {
	store    Store
	interval time.Duration

	mu      sync.Mutex
	puts    map[string]Entry
	deletes map[string]struct{}
	// flushMu serializes writes, so an older batch never lands after a newer.
	flushMu sync.Mutex

	written, flushes, failures atomic.Uint64
}

// NewTracker returns a tracker writing to store every interval (default 1s).
func NewTracker(store Store, interval time.Duration) *Tracker {
	if interval <= 0 {
		interval = time.Second
	}
	return &Tracker{store: store, interval: interval, puts: map[string]Entry{}, deletes: map[string]struct{}{}}
}

// Acknowledged records an acknowledged event. It is cheap: it runs on the
// pipeline's workers.
func (t *Tracker) Acknowledged(ev *kubestreamv1.Event) {
	if ev.GetImageStorage() != nil || ev.GetObject() == nil {
		return
	}
	key := Key(ev)
	t.mu.Lock()
	defer t.mu.Unlock()
	switch ev.GetOperation() {
	case kubestreamv1.Operation_OPERATION_CREATED, kubestreamv1.Operation_OPERATION_UPDATED, kubestreamv1.Operation_OPERATION_SNAPSHOT:
		t.puts[key] = Entry{UID: ev.GetObject().GetUid(), ResourceVersion: ev.GetObject().GetResourceVersion()}
		delete(t.deletes, key)
	case kubestreamv1.Operation_OPERATION_DELETED:
		// A delete of an older uid than the one saved last (a re-create
		// acknowledged in the same batch cannot precede its delete: one key's
		// events are acknowledged in order) removes the entry.
		delete(t.puts, key)
		t.deletes[key] = struct{}{}
	}
}

// Seed records positions that need no event (objects listed while no
// snapshot is sent), as if acknowledged.
func (t *Tracker) Seed(key string, e Entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.puts[key] = e
	delete(t.deletes, key)
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
			if _, newer := t.deletes[k]; newer {
				continue
			}
			if _, newer := t.puts[k]; !newer {
				t.puts[k] = e
			}
		}
		for k := range deletes {
			if _, newer := t.puts[k]; newer {
				continue
			}
			t.deletes[k] = struct{}{}
		}
		t.mu.Unlock()
		return fmt.Errorf("save %d positions and %d removals: %w", len(puts), len(dels), err)
	}
	t.flushes.Add(1)
	t.written.Add(uint64(len(puts) + len(dels)))
	return nil
}

// Stats are the tracker's counters.
type Stats struct {
	Written, Flushes, Failures uint64
}

// Stats returns the counters.
func (t *Tracker) Stats() Stats {
	return Stats{Written: t.written.Load(), Flushes: t.flushes.Load(), Failures: t.failures.Load()}
}
