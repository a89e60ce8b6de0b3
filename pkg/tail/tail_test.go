package tail_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/pipeline"
	"github.com/kubestream/kubestream/pkg/sink/kafka"
	natssink "github.com/kubestream/kubestream/pkg/sink/nats"
	"github.com/kubestream/kubestream/pkg/sink/nats/natstest"
	"github.com/kubestream/kubestream/pkg/tail"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// mixedEvents are one of each shape: a replay round with a snapshot, pod
// updates, a config map with a dotted name, a node and its image storage,
// and a delete.
func mixedEvents(t *testing.T) []*kubestreamv1.Event {
	t.Helper()
	tr := &event.Translator{Cluster: "test", Instance: "t"}
	node := natstest.Node("node-1.example", "uid-node", 5, 3)
	cm := natstest.ConfigMap("kube-system", "kube-root-ca.crt", "uid-cm", 7, map[string]string{"ca.crt": "pem"})
	changes := []*change.Change{
		{Op: change.ReplayBegin, ReplayID: "r1", Replay: &change.Replay{Reason: kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL, Kinds: []string{"configmaps", "nodes", "pods"}}},
		{Kind: kinds.ConfigMaps, Op: change.Snapshot, Object: cm, ReplayID: "r1"},
		{Op: change.ReplayEnd, ReplayID: "r1", Replay: &change.Replay{Reason: kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL, Kinds: []string{"configmaps", "nodes", "pods"}, Counts: map[string]int64{"configmaps": 1}}},
		natstest.PodUpdate("payments", "api-1", "uid-p1", 2),
		natstest.PodUpdate("shop", "web-1", "uid-w1", 3),
		{Kind: kinds.Nodes, Op: change.Created, Object: node},
		{Kind: kinds.Nodes, Op: change.Created, Object: node, ImageStorage: &kubestreamv1.ImageStorage{
			Node: "node-1.example", TotalBytes: 3 << 30, ImageCount: 3, DeltaBytes: 3 << 30,
			Severity: kubestreamv1.Severity_SEVERITY_WARNING, Transition: kubestreamv1.AlertTransition_ALERT_TRANSITION_FIRING, Reason: "image bytes 3GiB >= warning 2GiB"}},
		{Kind: kinds.Pods, Op: change.Deleted, Previous: natstest.Pod("payments", "api-1", "uid-p1", 4)},
		{Kind: kinds.Pods, Op: change.Heartbeat, Heartbeat: &kubestreamv1.Heartbeat{Resource: "pods", ResourceVersion: "4711", ObjectCount: 1, IntervalSeconds: 30}},
	}
	out := make([]*kubestreamv1.Event, len(changes))
	for i, c := range changes {
		c.ObservedAt = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
		ev, err := tr.Translate(c)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = ev
	}
	return out
}

func publish(t *testing.T, ctx context.Context, s pipeline.Sink, events []*kubestreamv1.Event) {
	t.Helper()
	for i, err := range s.Publish(ctx, events) {
		if err != nil {
			t.Fatalf("publish event %d: %v", i, err)
		}
	}
}

// jsonIDs decodes JSON lines and returns the event ids.
func jsonIDs(t *testing.T, out string) []string {
	t.Helper()
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		ev := &kubestreamv1.Event{}
		if err := protojson.Unmarshal(sc.Bytes(), ev); err != nil {
			t.Fatalf("line %q is not a protojson Event: %v", sc.Text(), err)
		}
		ids = append(ids, ev.GetId())
	}
	return ids
}

func ids(events []*kubestreamv1.Event) []string {
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = ev.GetId()
	}
	return out
}

func TestTailReadsWhatTheNATSSinkWrote(t *testing.T) {
	proc := natstest.StartProcess(t, natstest.ProcessOptions{})
	ctx := testCtx(t)
	sink, err := natssink.Open(ctx, natssink.ConnOptions{URLs: []string{proc.URL()}}, natssink.Options{Stream: natssink.StreamOptions{Name: "KS", Create: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(ctx)
	events := mixedEvents(t)
	publish(t, ctx, sink, events)
	src := &tail.NATS{Conn: natssink.ConnOptions{URLs: []string{proc.URL()}}, Stream: "KS", FromStart: true}

	var out bytes.Buffer
	if err := tail.Run(ctx, src, tail.Options{Format: tail.JSON, Limit: len(events), Out: &out}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(jsonIDs(t, out.String()), " "), strings.Join(ids(events), " "); got != want {
		t.Fatalf("tail printed ids\n%s\nwant\n%s", got, want)
	}

	// Filters and the human format.
	out.Reset()
	f, err := tail.ParseFilter("pods,imagestorage", "payments,", "updated,deleted,created,replay")
	if err != nil {
		t.Fatal(err)
	}
	if err := tail.Run(ctx, src, tail.Options{Filter: f, Format: tail.Text, Limit: 4, Out: &out}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	wants := [][]string{
		{"replay_begin", "replay", "initial round r1", "kinds=configmaps,nodes,pods"},
		{"replay_end", "objects=configmaps:1"},
		{"updated", "pods", "payments/api-1", "metadata.annotations.revision", "status.containerStatuses[0].restartCount"},
		{"deleted", "pods", "payments/api-1", "phase=Running"},
	}
	if len(lines) != len(wants) {
		t.Fatalf("text output has %d lines, want %d:\n%s", len(lines), len(wants), out.String())
	}
	for i, w := range wants {
		for _, part := range w {
			if !strings.Contains(lines[i], part) {
				t.Errorf("line %d %q lacks %q", i, lines[i], part)
			}
		}
	}
	// A heartbeat: of its kind, in no namespace, once.
	out.Reset()
	f, _ = tail.ParseFilter("pods", "payments", "heartbeat")
	if err := tail.Run(ctx, src, tail.Options{Filter: f, Format: tail.Text, Limit: 1, Out: &out}); err != nil {
		t.Fatal(err)
	}
	if want := "heartbeat    pods          complete up to resourceVersion 4711, 1 objects"; !strings.Contains(out.String(), want) {
		t.Fatalf("heartbeat line %q lacks %q", out.String(), want)
	}
	// The image-storage summary: kind filter imagestorage without a
	// namespace (nodes have none).
	out.Reset()
	f, _ = tail.ParseFilter("imagestorage", "", "")
	if err := tail.Run(ctx, src, tail.Options{Filter: f, Format: tail.Text, Limit: 3, Out: &out}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 3 {
		t.Fatalf("imagestorage filter printed %d lines, want the round's markers and the event:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "imagestorage  node-1.example  3.0GiB in 3 images (+3.0GiB) severity=WARNING firing: image bytes 3GiB >= warning 2GiB") {
		t.Fatalf("image-storage line missing:\n%s", out.String())
	}
}

// tailLive runs src in the background and publishes fresh events until tail
// printed limit of them: a live tail (new events only, or core NATS) has no
// "ready" signal, so the test keeps producing. It returns the printed ids
// and every id published before tail started.
func tailLive(t *testing.T, ctx context.Context, src tail.Source, sink pipeline.Sink, limit int) (printed []string, before []string) {
	t.Helper()
	old := mixedEvents(t)
	publish(t, ctx, sink, old)
	var out testbin.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- tail.Run(ctx, src, tail.Options{Format: tail.JSON, Limit: limit, Out: &out}) }()
	tr := &event.Translator{Cluster: "test"}
	for rv := 100; ; rv++ {
		ev, err := tr.Translate(natstest.PodUpdate("live", "p", "uid-live", rv))
		if err != nil {
			t.Fatal(err)
		}
		publish(t, ctx, sink, []*kubestreamv1.Event{ev})
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return jsonIDs(t, out.String()), ids(old)
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("tail printed only %q", out.String())
		}
	}
}

func TestTailNewEventsOnly(t *testing.T) {
	proc := natstest.StartProcess(t, natstest.ProcessOptions{})
	ctx := testCtx(t)
	for _, stream := range []string{"KS", ""} {
		name := "jetstream"
		if stream == "" {
			name = "core"
		}
		t.Run(name, func(t *testing.T) {
			sink, err := natssink.Open(ctx, natssink.ConnOptions{URLs: []string{proc.URL()}}, natssink.Options{Stream: natssink.StreamOptions{Name: stream, Create: stream != ""}})
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close(ctx)
			src := &tail.NATS{Conn: natssink.ConnOptions{URLs: []string{proc.URL()}}, Stream: stream}
			printed, before := tailLive(t, ctx, src, sink, 3)
			for _, id := range printed {
				for _, b := range before {
					if id == b {
						t.Fatalf("tail without --from-start printed event %s published before it started", id)
					}
				}
			}
		})
	}
	// Core NATS keeps no history.
	src := &tail.NATS{Conn: natssink.ConnOptions{URLs: []string{proc.URL()}}, FromStart: true}
	if err := tail.Run(ctx, src, tail.Options{Out: io.Discard}); err == nil || !strings.Contains(err.Error(), "--from-start needs a JetStream stream") {
		t.Fatalf("--from-start on core NATS: %v", err)
	}
	// A stream that is not there, named by the user: a clear error.
	src = &tail.NATS{Conn: natssink.ConnOptions{URLs: []string{proc.URL()}}, Stream: "NOPE"}
	if err := tail.Run(ctx, src, tail.Options{Out: io.Discard}); err == nil || !strings.Contains(err.Error(), "JetStream stream NOPE not found") {
		t.Fatalf("missing stream: %v", err)
	}
}

func TestTailReadsWhatTheKafkaSinkWrote(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testCtx(t)
	o := kafka.NewOptions()
	o.Brokers = c.ListenAddrs()
	o.CreateTopics = true
	o.Partitions = 3
	o.Tombstones = true
	sink, err := kafka.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(ctx)
	events := mixedEvents(t)
	publish(t, ctx, sink, events)

	var out bytes.Buffer
	src := &tail.Kafka{Brokers: c.ListenAddrs(), FromStart: true}
	if err := tail.Run(ctx, src, tail.Options{Format: tail.JSON, Limit: len(events), Out: &out}); err != nil {
		t.Fatal(err)
	}
	// Partitions interleave: compare as sets, and per object in order.
	got := jsonIDs(t, out.String())
	seen := map[string]int{}
	for i, id := range got {
		if _, dup := seen[id]; dup {
			t.Fatalf("event %s printed twice (marker copies must collapse)", id)
		}
		seen[id] = i
	}
	for _, ev := range events {
		if _, ok := seen[ev.GetId()]; !ok {
			t.Fatalf("event %s (%s) not printed; got %v", ev.GetId(), ev.GetOperation(), got)
		}
	}
	update, del := events[3].GetId(), events[7].GetId()
	if seen[update] > seen[del] {
		t.Fatalf("pod api-1: delete printed before its update")
	}

	// New events only: nothing from above.
	printed, before := tailLive(t, ctx, &tail.Kafka{Brokers: c.ListenAddrs()}, sink, 2)
	for _, id := range printed {
		for _, b := range before {
			if id == b {
				t.Fatalf("tail without --from-start printed old event %s", id)
			}
		}
	}
}

func TestParseFilterErrors(t *testing.T) {
	for _, tc := range [][3]string{{"pods/status", "", ""}, {"widgets *", "", ""}, {"", "", "exploded"}} {
		if _, err := tail.ParseFilter(tc[0], tc[1], tc[2]); err == nil {
			t.Errorf("ParseFilter%q accepted", tc)
		}
	}
	// Any kind by its resource name, the typed ones by any of theirs.
	f, err := tail.ParseFilter("widgets.example.com,Pod", "", "")
	if err != nil || !f.Kinds["widgets.example.com"] || !f.Kinds["pods"] {
		t.Errorf("ParseFilter(widgets.example.com,Pod) = %v, %v", f.Kinds, err)
	}
	if _, err := tail.ParseFormat("yaml"); err == nil {
		t.Error("ParseFormat(yaml) accepted")
	}
}
