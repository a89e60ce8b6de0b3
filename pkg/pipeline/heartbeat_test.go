package pipeline_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/pipeline"
)

func heartbeat(kind kinds.Kind, rv string) *change.Change {
	return &change.Change{Kind: kind, Op: change.Heartbeat, ObservedAt: time.Now(),
		Heartbeat: &kubestreamv1.Heartbeat{Resource: kind.Resource, ResourceVersion: rv}}
}

// A heartbeat goes out after every change of its kind enqueued before it,
// and does not wait for other kinds nor hold back what comes after it.
func TestHeartbeatFollowsItsKindOnly(t *testing.T) {
	var mu sync.Mutex
	blocked := true
	sink := &recordingSink{fail: func(ev *kubestreamv1.Event, _ int) error {
		mu.Lock()
		defer mu.Unlock()
		if blocked && ev.GetObject().GetKind() == "Pod" {
			return errors.New("pods topic unavailable")
		}
		return nil
	}}
	p := start(t, sink, pipeline.Options{Workers: 2, BatchSize: 3, MarkerWait: -1})
	for i := range 20 {
		p.Enqueue(cmChange(change.Created, fmt.Sprint("cm-", i), fmt.Sprint("u-", i), 10+i))
	}
	pod := cmChange(change.Created, "pod-0", "u-pod", 5)
	pod.Kind = kinds.Pods
	p.Enqueue(pod)
	p.Enqueue(heartbeat(kinds.ConfigMaps, "30"))
	p.Enqueue(heartbeat(kinds.Pods, "31"))
	p.Enqueue(cmChange(change.Created, "after", "u-after", 40))

	deadline := time.Now().Add(10 * time.Second)
	for !published(sink, "after") || countOp(sink, kubestreamv1.Operation_OPERATION_HEARTBEAT) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("config map heartbeat or later change not published while pods fail; stats %+v", p.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The config map heartbeat came after all 20 earlier config maps.
	seen := 0
	for _, ev := range sink.events() {
		if hb := ev.GetHeartbeat(); hb != nil {
			if hb.GetResource() != "configmaps" {
				t.Fatalf("pods heartbeat published before the pod it waits for: %v", hb)
			}
			if seen != 20 {
				t.Fatalf("config map heartbeat after %d of 20 earlier config maps", seen)
			}
			if len(hb.GetPendingKeys()) != 0 {
				t.Fatalf("heartbeat names pending keys %v with nothing pending", hb.GetPendingKeys())
			}
		}
		if ev.GetObject().GetKind() == "ConfigMap" && ev.GetObject().GetName() != "after" {
			seen++
		}
	}
	mu.Lock()
	blocked = false
	mu.Unlock()
	waitIdle(t, p)
	evs := sink.events()
	last := evs[len(evs)-1]
	if last.GetHeartbeat().GetResource() != "pods" || last.GetHeartbeat().GetResourceVersion() != "31" {
		t.Fatalf("last event %v, want the pods heartbeat right after the pod healed", last)
	}
}

func countOp(s *recordingSink, op kubestreamv1.Operation) int {
	n := 0
	for _, ev := range s.events() {
		if ev.GetOperation() == op {
			n++
		}
	}
	return n
}

// A heartbeat waiting for a failing key goes out after MarkerWait naming it;
// a newer heartbeat replaces one still waiting.
func TestHeartbeatNamesFailingKeysAfterWaiting(t *testing.T) {
	sink := &recordingSink{fail: func(ev *kubestreamv1.Event, _ int) error {
		if ev.GetObject().GetName() == "stuck" {
			return errors.New("record too large for now")
		}
		return nil
	}}
	p := start(t, sink, pipeline.Options{Workers: 2, MarkerWait: 50 * time.Millisecond})
	p.Enqueue(cmChange(change.Created, "stuck", "u-stuck", 1))
	p.Enqueue(cmChange(change.Created, "fine", "u-fine", 2))
	p.Enqueue(heartbeat(kinds.ConfigMaps, "3"))
	p.Enqueue(heartbeat(kinds.ConfigMaps, "4"))
	deadline := time.Now().Add(10 * time.Second)
	for countOp(sink, kubestreamv1.Operation_OPERATION_HEARTBEAT) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("heartbeat never published past a failing key; stats %+v", p.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	var hb *kubestreamv1.Heartbeat
	for _, ev := range sink.events() {
		if ev.GetHeartbeat() != nil {
			hb = ev.GetHeartbeat()
		}
	}
	if hb.GetResourceVersion() != "4" || fmt.Sprint(hb.GetPendingKeys()) != "[configmaps/ns/stuck]" {
		t.Fatalf("heartbeat %v: want resourceVersion 4 naming configmaps/ns/stuck", hb)
	}
	if st := p.Stats(); st.HeartbeatsReplaced != 1 || st.HeartbeatsForced != 1 {
		t.Fatalf("stats %+v: want one heartbeat replaced and one forced", st)
	}
}

// An ignored update is never published; its position is recorded only once
// the changes before it on its key were acknowledged.
func TestAdvancedRecordsPositionInKeyOrder(t *testing.T) {
	var mu sync.Mutex
	var order []string
	fails := 3
	sink := &recordingSink{fail: func(ev *kubestreamv1.Event, attempt int) error {
		if attempt <= fails {
			return errors.New("broker unavailable")
		}
		mu.Lock()
		order = append(order, "published "+ev.GetObject().GetResourceVersion())
		mu.Unlock()
		return nil
	}}
	p := start(t, sink, pipeline.Options{Workers: 2, OnAdvanced: func(c *change.Change) {
		mu.Lock()
		order = append(order, "advanced "+c.Object.GetResourceVersion())
		mu.Unlock()
	}})
	p.Enqueue(cmChange(change.Created, "a", "u-a", 1))
	// Wait until the create is in flight, so the ignored update cannot fold
	// into it and must wait its turn.
	for p.Stats().Retried == 0 {
		time.Sleep(time.Millisecond)
	}
	adv := cmChange(change.Advanced, "a", "u-a", 2)
	adv.Previous = cmChange(change.Created, "a", "u-a", 1).Object
	p.Enqueue(adv)
	waitIdle(t, p)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(order) != "[published 1 advanced 2]" {
		t.Fatalf("order %v, want the create acknowledged before the ignored update's position", order)
	}
	for _, ev := range sink.events() {
		if ev.GetObject().GetResourceVersion() == "2" {
			t.Fatalf("ignored update published: %v", ev)
		}
	}
	if st := p.Stats(); st.Advanced != 1 || st.Published != 1 {
		t.Fatalf("stats %+v: want one advanced, one published", st)
	}
}
