package nats_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/pipeline"
	natssink "github.com/kubestream/kubestream/pkg/sink/nats"
	"github.com/kubestream/kubestream/pkg/sink/nats/natstest"
)

// runPipeline drives the real pipeline into sink and returns it with the ids
// of acknowledged events.
func runPipeline(t *testing.T, sink pipeline.Sink) (*pipeline.Pipeline, func() map[string]bool) {
	t.Helper()
	var mu sync.Mutex
	acked := map[string]bool{}
	p := pipeline.New(sink, &event.Translator{Cluster: "test", Instance: "t"}, pipeline.Options{
		Workers: 4, BatchSize: 64, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		OnAcknowledged: func(ev *kubestreamv1.Event, _ time.Time) {
			mu.Lock()
			acked[ev.GetId()] = true
			mu.Unlock()
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return p, func() map[string]bool {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string]bool, len(acked))
		for k := range acked {
			out[k] = true
		}
		return out
	}
}

// TestServerRestartLosesNothingAcknowledged restarts a nats-server process
// while the pipeline streams updates of many pods into JetStream: every
// event the pipeline counted as acknowledged is in the stream, each pod's
// events are in order, and each pod's final state arrived.
func TestServerRestartLosesNothingAcknowledged(t *testing.T) {
	proc := natstest.StartProcess(t, natstest.ProcessOptions{})
	ctx := ctxFor(t, 120*time.Second)
	sink, err := natssink.Open(ctx, natssink.ConnOptions{URLs: []string{proc.URL()}}, natssink.Options{
		Stream:     natssink.StreamOptions{Name: "KS", Create: true, Storage: "file", MaxAge: time.Hour, DuplicateWindow: 10 * time.Minute},
		AckTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(ctx)
	p, acked := runPipeline(t, sink)

	const pods, rounds = 20, 60
	for r := 1; r <= rounds; r++ {
		if r == rounds/3 {
			// Down while updates keep coming: publishes must fail and be
			// retried until the server is back.
			proc.Stop()
		}
		for i := 0; i < pods; i++ {
			p.Enqueue(natstest.PodUpdate("payments", fmt.Sprintf("api-%d", i), fmt.Sprintf("uid-%d", i), r))
		}
		if r == rounds/3+5 {
			waitFor(t, ctx, "a publish to fail while the server is down", func() bool { return p.Stats().Retried > 0 })
			proc.Start()
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.WaitIdle(ctx); err != nil {
		t.Fatalf("pipeline did not drain after the restart: %v (stats %+v)", err, p.Stats())
	}
	st := p.Stats()
	if st.Lost != 0 {
		t.Fatalf("%d events failed for good", st.Lost)
	}

	msgs := readStream(t, connect(t, proc.URL()), "KS")
	inStream := map[string]bool{}
	last := map[string]int{}
	for _, m := range msgs {
		ev := decode(t, m.Data())
		if inStream[ev.GetId()] {
			t.Errorf("event %s stored twice despite Nats-Msg-Id", ev.GetId())
		}
		inStream[ev.GetId()] = true
		name := ev.GetObject().GetName()
		rv, _ := strconv.Atoi(ev.GetObject().GetResourceVersion())
		if rv <= last[name] {
			t.Errorf("pod %s: revision %d after %d: per-object order broken", name, rv, last[name])
		}
		last[name] = rv
	}
	for id := range acked() {
		if !inStream[id] {
			t.Errorf("acknowledged event %s is not in the stream", id)
		}
	}
	for i := 0; i < pods; i++ {
		if name := fmt.Sprintf("api-%d", i); last[name] != rounds {
			t.Errorf("pod %s: last revision in the stream is %d, want the final %d", name, last[name], rounds)
		}
	}
	t.Logf("stats %+v, %d messages in the stream", st, len(msgs))
}

// TestOversizedEventsDoNotStallOthers sets max_payload to 64 KiB: an event
// over it is trimmed (truncated, states dropped), one that cannot fit even
// trimmed fails for good, and the other objects' events go on.
func TestOversizedEventsDoNotStallOthers(t *testing.T) {
	const maxPayload = 64 << 10
	proc := natstest.StartProcess(t, natstest.ProcessOptions{MaxPayload: maxPayload})
	ctx := ctxFor(t, 60*time.Second)
	sink, err := natssink.Open(ctx, natssink.ConnOptions{URLs: []string{proc.URL()}}, natssink.Options{
		Stream: natssink.StreamOptions{Name: "KS", Create: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(ctx)
	p, _ := runPipeline(t, sink)

	big := natstest.ConfigMap("apps", "big.properties", "uid-big", 1, map[string]string{"blob": strings.Repeat("x", 100<<10)})
	huge := map[string]string{}
	for i := 0; i < 4000; i++ {
		// So many keys that even the summary (keys and sizes) is over 64 KiB.
		huge[fmt.Sprintf("key-%04d-%s", i, strings.Repeat("k", 20))] = "v"
	}
	hopeless := natstest.ConfigMap("apps", "hopeless", "uid-hopeless", 1, huge)
	p.Enqueue(&change.Change{Kind: kinds.ConfigMaps, Op: change.Created, Object: big, ObservedAt: time.Now()})
	p.Enqueue(&change.Change{Kind: kinds.ConfigMaps, Op: change.Created, Object: hopeless, ObservedAt: time.Now()})
	for i := 0; i < 10; i++ {
		p.Enqueue(natstest.PodUpdate("payments", fmt.Sprintf("api-%d", i), fmt.Sprintf("uid-%d", i), 2))
	}
	if err := p.WaitIdle(ctx); err != nil {
		t.Fatalf("pipeline stalled: %v (stats %+v)", err, p.Stats())
	}
	if st := p.Stats(); st.Published != 11 || st.Lost != 1 {
		t.Fatalf("stats %+v: want 11 published (10 pods, 1 trimmed) and 1 failed", st)
	}
	if sink.Trimmed() != 1 {
		t.Fatalf("trimmed %d events, want 1", sink.Trimmed())
	}
	msgs := readStream(t, connect(t, proc.URL()), "KS")
	found := false
	for _, m := range msgs {
		ev := decode(t, m.Data())
		if ev.GetObject().GetName() != "big.properties" {
			continue
		}
		found = true
		if !ev.GetChange().GetTruncated() || ev.GetChange().GetObject() != nil || m.Headers().Get(event.HeaderTruncated) != "true" {
			t.Errorf("oversized event not marked truncated or still carrying its state (truncated=%v, %d object bytes, header %q)",
				ev.GetChange().GetTruncated(), len(ev.GetChange().GetObject()), m.Headers().Get(event.HeaderTruncated))
		}
		if ev.GetChange().GetConfigMap().GetValueSizes()["blob"] != 100<<10 {
			t.Errorf("trimmed event lost its summary: %v", ev.GetChange().GetConfigMap())
		}
	}
	if !found || len(msgs) != 11 {
		t.Fatalf("stream holds %d messages (trimmed event found: %v), want 11", len(msgs), found)
	}
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
