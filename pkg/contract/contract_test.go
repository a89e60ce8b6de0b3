package contract_test

import (
	"fmt"
	"sort"
	"testing"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/contract"
)

func obj(op kubestreamv1.Operation, name, uid, rv string) *kubestreamv1.Event {
	return &kubestreamv1.Event{Operation: op, Object: &kubestreamv1.ObjectRef{Resource: "pods", Namespace: "ns", Name: name, Uid: uid, ResourceVersion: rv}}
}

func marker(op kubestreamv1.Operation, id string, pending []string, truncated bool) *kubestreamv1.Event {
	return &kubestreamv1.Event{Operation: op, ReplayId: id, Payload: &kubestreamv1.Event_Replay{Replay: &kubestreamv1.ReplayMarker{
		ReplayId: id, Kinds: []string{"pods"}, PendingKeys: pending, PendingKeysTruncated: truncated}}}
}

const (
	created  = kubestreamv1.Operation_OPERATION_CREATED
	updated  = kubestreamv1.Operation_OPERATION_UPDATED
	deleted  = kubestreamv1.Operation_OPERATION_DELETED
	snapshot = kubestreamv1.Operation_OPERATION_SNAPSHOT
	begin    = kubestreamv1.Operation_OPERATION_REPLAY_BEGIN
	end      = kubestreamv1.Operation_OPERATION_REPLAY_END
)

func uids(s *contract.State) string {
	var out []string
	for uid, o := range s.Objects() {
		out = append(out, uid+"@"+o.ResourceVersion)
	}
	sort.Strings(out)
	return fmt.Sprint(out)
}

func TestRule(t *testing.T) {
	tests := []struct {
		name        string
		events      []*kubestreamv1.Event
		want        string
		wantDropped string
	}{
		{"upsert and delete by uid", []*kubestreamv1.Event{
			obj(created, "a", "u1", "1"), obj(updated, "a", "u1", "2"), obj(created, "b", "u2", "3"), obj(deleted, "b", "u2", "4"),
		}, "[u1@2]", "[]"},
		{"a same-name re-create is two objects", []*kubestreamv1.Event{
			obj(created, "a", "u1", "1"), obj(deleted, "a", "u1", "2"), obj(created, "a", "u3", "3"),
		}, "[u3@3]", "[]"},
		{"a round drops what it did not mention", []*kubestreamv1.Event{
			obj(created, "a", "u1", "1"), obj(created, "b", "u2", "2"),
			marker(begin, "r", nil, false), obj(snapshot, "a", "u1", "1"), marker(end, "r", nil, false),
		}, "[u1@1]", "[u2]"},
		{"a live change during the round counts as mentioned", []*kubestreamv1.Event{
			obj(created, "a", "u1", "1"), obj(created, "b", "u2", "2"),
			marker(begin, "r", nil, false), obj(updated, "b", "u2", "5"), obj(created, "c", "u4", "6"), obj(snapshot, "a", "u1", "1"), marker(end, "r", nil, false),
		}, "[u1@1 u2@5 u4@6]", "[]"},
		{"pending keys are kept", []*kubestreamv1.Event{
			obj(created, "a", "u1", "1"), marker(begin, "r", nil, false), marker(end, "r", []string{"pods/ns/a"}, false),
		}, "[u1@1]", "[]"},
		{"a truncated pending list drops nothing", []*kubestreamv1.Event{
			obj(created, "a", "u1", "1"), marker(begin, "r", nil, false), marker(end, "r", nil, true),
		}, "[u1@1]", "[]"},
		{"an end without its begin drops nothing", []*kubestreamv1.Event{
			obj(snapshot, "a", "u1", "1"), marker(end, "r", nil, false),
		}, "[u1@1]", "[]"},
		{"image-storage events carry no object state", []*kubestreamv1.Event{
			{Operation: created, Object: &kubestreamv1.ObjectRef{Resource: "nodes", Name: "n", Uid: "n1"}, Payload: &kubestreamv1.Event_ImageStorage{ImageStorage: &kubestreamv1.ImageStorage{Node: "n"}}},
		}, "[]", "[]"},
		{"heartbeats carry no object state and do not count as mentions", []*kubestreamv1.Event{
			obj(created, "a", "u1", "1"), marker(begin, "r", nil, false), heartbeat("pods", "7"), marker(end, "r", nil, false),
		}, "[]", "[u1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := contract.New()
			for _, ev := range tt.events {
				s.Apply(ev)
			}
			if got := uids(s); got != tt.want {
				t.Errorf("objects = %s, want %s", got, tt.want)
			}
			if got := fmt.Sprint(s.Dropped()); got != tt.wantDropped {
				t.Errorf("dropped = %s, want %s", got, tt.wantDropped)
			}
		})
	}
}

func heartbeat(resource, rv string) *kubestreamv1.Event {
	return &kubestreamv1.Event{Operation: kubestreamv1.Operation_OPERATION_HEARTBEAT,
		Payload: &kubestreamv1.Event_Heartbeat{Heartbeat: &kubestreamv1.Heartbeat{Resource: resource, ResourceVersion: rv}}}
}

func TestWatermarkIsTheLatestHeartbeatPerKind(t *testing.T) {
	s := contract.New()
	s.Apply(heartbeat("pods", "7"))
	s.Apply(heartbeat("nodes", "8"))
	s.Apply(heartbeat("pods", "9"))
	if got := s.Watermark("pods").GetResourceVersion(); got != "9" {
		t.Errorf("pods watermark %q, want 9", got)
	}
	if got := s.Watermark("nodes").GetResourceVersion(); got != "8" {
		t.Errorf("nodes watermark %q, want 8", got)
	}
	if s.Watermark("configmaps") != nil {
		t.Error("watermark of a kind without heartbeats")
	}
}

func TestStreamsApplyTheRulePerStream(t *testing.T) {
	m := contract.NewStreams()
	m.Apply("pods/0", obj(created, "a", "u1", "1"))
	m.Apply("pods/1", obj(created, "b", "u2", "2"))
	// A round on partition 1 does not see partition 0's objects.
	m.Apply("pods/1", marker(begin, "r", nil, false))
	m.Apply("pods/1", obj(snapshot, "b", "u2", "2"))
	m.Apply("pods/1", marker(end, "r", nil, false))
	m.Apply("pods/1", obj(deleted, "b", "u2", "3"))
	if got := len(m.Objects()); got != 1 || !m.Deleted("u2") || m.Deleted("u1") || len(m.Dropped()) != 0 {
		t.Fatalf("objects %v, dropped %v", m.Objects(), m.Dropped())
	}
}

func TestStepReportsEffects(t *testing.T) {
	s := contract.New()
	describe := func(effs []contract.Effect) string {
		var out []string
		for _, e := range effs {
			switch e.Type {
			case contract.Upserted:
				out = append(out, fmt.Sprintf("upsert %s new=%v", e.Object.UID, e.Previous == nil))
			case contract.Deleted:
				out = append(out, fmt.Sprintf("delete held=%v", e.Object != nil))
			case contract.Dropped:
				out = append(out, "drop "+e.Object.UID)
			case contract.RoundEnded:
				out = append(out, fmt.Sprintf("end complete=%v", e.Complete))
			}
		}
		return fmt.Sprint(out)
	}
	steps := []struct {
		ev   *kubestreamv1.Event
		want string
	}{
		{marker(end, "r0", nil, false), "[end complete=false]"},
		{obj(created, "a", "u1", "1"), "[upsert u1 new=true]"},
		{obj(updated, "a", "u1", "2"), "[upsert u1 new=false]"},
		{obj(created, "b", "u2", "3"), "[upsert u2 new=true]"},
		{marker(begin, "r", nil, false), "[]"},
		{obj(snapshot, "a", "u1", "2"), "[upsert u1 new=false]"},
		{marker(end, "r", nil, false), "[drop u2 end complete=true]"},
		{obj(deleted, "a", "u1", "3"), "[delete held=true]"},
		{obj(deleted, "a", "u1", "3"), "[delete held=false]"},
	}
	for i, st := range steps {
		if got := describe(s.Step(st.ev)); got != st.want {
			t.Errorf("step %d (%s): %s, want %s", i, st.ev.GetOperation(), got, st.want)
		}
	}
}
