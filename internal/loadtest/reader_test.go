package loadtest

import (
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/tail"
)

// benchEvents are the events of a harness run: a round's markers around a
// snapshot, and a pod's life with a repeated update.
func benchEvents() []*kubestreamv1.Event {
	obj := func(name, rv string) *kubestreamv1.ObjectRef {
		return &kubestreamv1.ObjectRef{Version: "v1", Kind: "Pod", Namespace: "bench", Name: name, Uid: "u-" + name, ResourceVersion: rv}
	}
	change := &kubestreamv1.Event_Change{Change: &kubestreamv1.ObjectChange{ChangedPaths: []string{"metadata.annotations.tick"}}}
	replay := &kubestreamv1.Event_Replay{Replay: &kubestreamv1.ReplayMarker{ReplayId: "r1", Kinds: []string{"pods"}}}
	return []*kubestreamv1.Event{
		{Id: "b1", Operation: kubestreamv1.Operation_OPERATION_REPLAY_BEGIN, ReplayId: "r1", Payload: replay},
		{Id: "s1", Operation: kubestreamv1.Operation_OPERATION_SNAPSHOT, ReplayId: "r1", Object: obj("scale-000001", "3")},
		{Id: "e1", Operation: kubestreamv1.Operation_OPERATION_REPLAY_END, ReplayId: "r1", Payload: replay},
		{Id: "c1", Operation: kubestreamv1.Operation_OPERATION_CREATED, Object: obj("churn-000001", "10")},
		{Id: "u1", Operation: kubestreamv1.Operation_OPERATION_UPDATED, Object: obj("churn-000001", "11"), Payload: change},
		{Id: "u1", Operation: kubestreamv1.Operation_OPERATION_UPDATED, Object: obj("churn-000001", "11"), Payload: change},
		{Id: "u2", Operation: kubestreamv1.Operation_OPERATION_UPDATED, Object: obj("churn-000001", "12"), Payload: change},
		{Id: "d1", Operation: kubestreamv1.Operation_OPERATION_DELETED, Object: obj("churn-000001", "13")},
		{Id: "h1", Operation: kubestreamv1.Operation_OPERATION_HEARTBEAT, Payload: &kubestreamv1.Event_Heartbeat{Heartbeat: &kubestreamv1.Heartbeat{Resource: "pods"}}},
	}
}

func ticks(n int) []time.Time {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var out []time.Time
	for i := range n {
		out = append(out, t0.Add(time.Duration(i+1)*time.Millisecond))
	}
	return out
}

// sameBookkeeping fails t unless a and b hold the same keys, receipts,
// counts and markers.
func sameBookkeeping(t *testing.T, a, b *Recorder) {
	t.Helper()
	for _, c := range []struct {
		what string
		a, b any
	}{
		{"receipts", a.at, b.at}, {"counts", a.counts, b.counts}, {"snapshots", a.snaps, b.snaps},
		{"REPLAY_ENDs", a.ends, b.ends}, {"REPLAY_BEGIN times", a.begins, b.begins}, {"REPLAY_END times", a.endAt, b.endAt},
	} {
		if !reflect.DeepEqual(c.a, c.b) {
			t.Errorf("%s: %v, want %v", c.what, c.a, c.b)
		}
	}
}

func TestEventRecordsAsLine(t *testing.T) {
	evs := benchEvents()
	times := ticks(len(evs))
	lines, decoded := recorderAt(times...), NewRecorder()
	for i, ev := range evs {
		b, err := protojson.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		lines.Line(b)
		decoded.Event(times[i], ev)
	}
	sameBookkeeping(t, decoded, lines)
	if lines.Err() != nil || decoded.Err() != nil {
		t.Fatalf("errors: %v / %v", lines.Err(), decoded.Err())
	}
	// The figures the harness reads, spelled out.
	if got, ok := decoded.ReceivedAt(EventKey("churn-000001", opAnnotate, "11")); !ok || !got.Equal(times[4]) {
		t.Errorf("update rv 11 received %v (%v), want the first copy's %v", got, ok, times[4])
	}
	if got, ok := decoded.ReceivedAt(EventKey("churn-000001", opDelete, "")); !ok || !got.Equal(times[7]) {
		t.Errorf("delete received %v (%v), want %v", got, ok, times[7])
	}
	if decoded.Delivered("churn") != 5 || decoded.Snapshots("scale") != 1 || decoded.ReplayEnds() != 1 {
		t.Errorf("Delivered %d, Snapshots %d, ReplayEnds %d; want 5, 1, 1", decoded.Delivered("churn"), decoded.Snapshots("scale"), decoded.ReplayEnds())
	}
}

func TestBrokerReaderRecordsAsLine(t *testing.T) {
	evs := benchEvents()
	times := ticks(len(evs))
	lines := recorderAt(times...)
	for _, ev := range evs {
		b, err := protojson.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		lines.Line(b)
	}
	// The same events as protobuf messages, the markers and the heartbeat
	// once per Kafka partition (three copies): one of each is recorded,
	// as `kubestream tail` printed one.
	var msgs []tail.Message
	var at []time.Time
	for i, ev := range evs {
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		copies := 1
		if ev.GetObject() == nil {
			copies = 3
		}
		for range copies {
			msgs = append(msgs, tail.Message{Origin: "kubestream.pods/0@1", ContentType: event.ContentTypeProtobuf, Data: b})
			at = append(at, times[i])
		}
	}
	decoded := recorderAt(at...)
	b := newBrokerReader(decoded)
	for _, m := range msgs {
		if err := b.handle(m); err != nil {
			t.Fatal(err)
		}
	}
	sameBookkeeping(t, decoded, lines)
	if decoded.Err() != nil {
		t.Fatalf("Err = %v", decoded.Err())
	}

	// A message that is not an event is an error, and reading goes on.
	bad := recorderAt(ticks(2)...)
	b = newBrokerReader(bad)
	_ = b.handle(tail.Message{Origin: "kubestream.pods/1@7", ContentType: event.ContentTypeProtobuf, Data: []byte{0xff, 0xff}})
	good, _ := proto.Marshal(evs[3])
	_ = b.handle(tail.Message{ContentType: event.ContentTypeProtobuf, Data: good})
	if bad.Err() == nil {
		t.Error("a message that is not an event: want Err")
	}
	if bad.Delivered("churn") != 1 {
		t.Errorf("after a bad message Delivered = %d, want 1", bad.Delivered("churn"))
	}
}
