package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/pipeline"
)

// TestPipelineThroughBrokerFaults drives the real pipeline into the sink
// while the broker fails produce requests (error codes, then dropped
// connections) and recovers. Every acknowledged event must be in Kafka, in
// order per object, and a 1 MiB config map must not hold anything up.
func TestPipelineThroughBrokerFaults(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	o.Compression = "none"
	s := openSink(t, ctx, o)

	var mu sync.Mutex
	acked := map[string]bool{}
	p := pipeline.New(s, &event.Translator{Cluster: "test", Instance: "t"}, pipeline.Options{
		Workers: 4, BatchSize: 64, MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		OnAcknowledged: func(ev *kubestreamv1.Event, _ time.Time) {
			mu.Lock()
			acked[ev.GetId()] = true
			mu.Unlock()
		},
	})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go p.Run(runCtx)

	const objects = 30
	// enqueueOrder[key] lists resourceVersions in the order enqueued.
	enqueueOrder := map[string][]string{}
	rv := 0
	enqueue := func(op change.Op, i int) {
		rv++
		name := fmt.Sprintf("cm-%02d", i)
		cm := configMap("app", name, "uid-"+name, fmt.Sprint(rv), map[string]string{"v": fmt.Sprint(rv)})
		ch := &change.Change{Kind: kinds.ConfigMaps, Op: op, ObservedAt: time.Now()}
		if op == change.Deleted {
			ch.Previous = cm
		} else {
			ch.Object = cm
		}
		key := "configmaps/app/" + name
		enqueueOrder[key] = append(enqueueOrder[key], cm.ResourceVersion)
		p.Enqueue(ch)
	}
	wait := func(phase string) {
		if err := p.WaitIdle(ctx); err != nil {
			t.Fatalf("%s: pipeline did not drain: %v (stats %+v)", phase, err, p.Stats())
		}
	}

	for i := range objects {
		enqueue(change.Created, i)
	}
	wait("healthy")

	// Phase 1: produce answers errors, some after appending (so retries
	// write duplicates), until enough requests failed; a 1 MiB config map
	// arrives meanwhile.
	faults := c.Fault(
		kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotLeaderForPartition, Count: 10},
		kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicasAfterAppend, Count: 10},
	)
	big := binaryConfigMap("huge", "1", 1000000)
	p.Enqueue(&change.Change{Kind: kinds.ConfigMaps, Op: change.Created, Object: big, ObservedAt: time.Now()})
	for round := 0; round < 3; round++ {
		for i := range objects {
			enqueue(change.Updated, i)
		}
	}
	if err := faults.Wait(ctx, 20); err != nil {
		t.Fatalf("faults never hit: %v", err)
	}
	wait("error codes")

	// Phase 2: the broker drops connections on produce, then recovers.
	var dropped atomic.Int32
	c.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		if dropped.Add(1) <= 8 {
			c.KeepControl()
			return nil, errors.New("injected connection drop"), true
		}
		c.DropControl()
		return nil, nil, false
	})
	for round := 0; round < 2; round++ {
		for i := range objects {
			enqueue(change.Updated, i)
		}
	}
	for i := range objects {
		enqueue(change.Deleted, i)
	}
	wait("dropped connections")
	if n := dropped.Load(); n < 8 {
		t.Fatalf("only %d produce requests saw a dropped connection, want 8", n)
	}

	st := p.Stats()
	if st.Lost != 0 || st.Retried == 0 {
		t.Errorf("pipeline stats %+v: want retries and no failures", st)
	}
	recs := readTopic(t, ctx, o.Brokers, "kubestream.configmaps")
	inKafka := map[string]bool{}
	seq := map[string][]string{}
	for _, r := range recs {
		ev := decode(t, r)
		inKafka[ev.GetId()] = true
		seq[string(r.Key)] = append(seq[string(r.Key)], ev.GetObject().GetResourceVersion())
	}
	mu.Lock()
	for id := range acked {
		if !inKafka[id] {
			t.Errorf("acknowledged event %s is not in Kafka", id)
		}
	}
	mu.Unlock()
	// At least once: a fault that answers an error after appending makes
	// the retry a duplicate.
	if len(seq["configmaps/big/huge"]) == 0 {
		t.Errorf("the 1 MiB config map is not in Kafka")
	}
	for key, order := range enqueueOrder {
		pos := map[string]int{}
		for i, v := range order {
			pos[v] = i
		}
		got := seq[key]
		last := -1
		for _, v := range got {
			if pos[v] < last {
				t.Errorf("%s: order in Kafka %v breaks enqueue order %v", key, got, order)
				break
			}
			last = pos[v]
		}
		if len(got) == 0 || got[len(got)-1] != order[len(order)-1] {
			t.Errorf("%s: last record %v, want the delete (rv %s)", key, got, order[len(order)-1])
		}
	}
	t.Logf("pipeline %+v; sink %+v; %d records for %d acknowledged events", st, s.Stats(), len(recs), len(acked))
	if left := p.Shutdown(ctx); left != 0 {
		t.Errorf("%d changes left at shutdown", left)
	}
}
