package loadtest

import (
	"strings"
	"testing"
	"time"
)

// recorderAt returns a Recorder whose clock reads the times given, one per
// line.
func recorderAt(times ...time.Time) *Recorder {
	r := NewRecorder()
	r.now = func() time.Time {
		t := times[0]
		times = times[1:]
		return t
	}
	return r
}

func TestEventMatching(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	r := recorderAt(at(1), at(2), at(3), at(4), at(5), at(6), at(7), at(8))
	lines := []string{
		`{"operation":"OPERATION_REPLAY_END"}`,
		`{"operation":"OPERATION_CREATED","object":{"name":"churn-000001","resourceVersion":"10"}}`,
		`{"operation":"OPERATION_UPDATED","object":{"name":"churn-000001","resourceVersion":"11"}}`,
		// A repeat (a retry, or a copy) keeps the first receipt.
		`{"operation":"OPERATION_UPDATED","object":{"name":"churn-000001","resourceVersion":"11"}}`,
		// The update that sets deletionTimestamp, then the delete with the
		// deletion's resourceVersion, which the writer never sees.
		`{"operation":"OPERATION_UPDATED","object":{"name":"churn-000001","resourceVersion":"12"}}`,
		`{"operation":"OPERATION_DELETED","object":{"name":"churn-000001","resourceVersion":"13"}}`,
		`{"operation":"OPERATION_SNAPSHOT","object":{"name":"scale-000001","resourceVersion":"3"}}`,
		`not json`,
	}
	r.Read(strings.NewReader(strings.Join(lines, "\n") + "\n"))

	for _, c := range []struct {
		pod, op, rv string
		want        time.Time
	}{
		{"churn-000001", opCreate, "10", at(2)},
		{"churn-000001", opAnnotate, "11", at(3)},
		{"churn-000001", opRelabel, "11", at(3)}, // any UPDATED write
		{"churn-000001", opDelete, "", at(6)},
		{"churn-000001", opDelete, "99", at(6)}, // deletes by name alone
	} {
		got, ok := r.ReceivedAt(EventKey(c.pod, c.op, c.rv))
		if !ok || !got.Equal(c.want) {
			t.Errorf("%s %s rv %s: received %v (%v), want %v", c.pod, c.op, c.rv, got, ok, c.want)
		}
	}
	for _, key := range []string{EventKey("churn-000001", opCreate, "11"), EventKey("churn-000002", opCreate, "10"), EventKey("churn-000001", opAnnotate, "10")} {
		if _, ok := r.ReceivedAt(key); ok {
			t.Errorf("%s matched, want no match", key)
		}
	}
	if got := r.Delivered("churn"); got != 5 {
		t.Errorf("Delivered(churn) = %d, want 5 (repeats count)", got)
	}
	if got, want := r.Snapshots("scale"), 1; got != want || r.Snapshots("churn") != 0 {
		t.Errorf("Snapshots = %d / %d, want %d / 0", got, r.Snapshots("churn"), want)
	}
	if r.ReplayEnds() != 1 {
		t.Errorf("ReplayEnds = %d, want 1", r.ReplayEnds())
	}
	if r.Err() == nil {
		t.Error("a line that is not an event: want Err")
	}
}

func TestLatenciesFromSend(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := recorderAt(t0.Add(30*time.Millisecond), t0.Add(12*time.Millisecond))
	r.Line([]byte(`{"operation":"OPERATION_CREATED","object":{"name":"a-1","resourceVersion":"5"}}`))
	r.Line([]byte(`{"operation":"OPERATION_CREATED","object":{"name":"b-1","resourceVersion":"6"}}`))
	writes := []write{
		{pod: "a-1", op: opCreate, key: EventKey("a-1", opCreate, "5"), sent: t0},
		{pod: "b-1", op: opCreate, key: EventKey("b-1", opCreate, "6"), sent: t0.Add(10 * time.Millisecond)},
		{pod: "c-1", op: opCreate, key: EventKey("c-1", opCreate, "7"), sent: t0},
	}
	lat, unmatched := latencies(writes, r)
	if unmatched != 1 || len(lat) != 2 {
		t.Fatalf("latencies %v, %d unmatched; want 2 and 1", lat, unmatched)
	}
	if !near(lat[0], 0.002) || !near(lat[1], 0.030) {
		t.Errorf("latencies %v, want [0.002 0.030] sorted", lat)
	}
	if got := expectedEvents(append(writes, write{op: opDelete})); got != 5 {
		t.Errorf("expectedEvents = %d, want 5 (a delete is two watch events)", got)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestTenthsShowAGrowingLag(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var writes []write
	var times []time.Time
	for i := range 100 {
		name := "burst-" + string(rune('a'+i/26)) + string(rune('a'+i%26))
		sent := t0.Add(time.Duration(i) * time.Millisecond)
		// The lag grows by a millisecond per write: 0 ms for the first.
		times = append(times, sent.Add(time.Duration(i)*time.Millisecond))
		writes = append(writes, write{pod: name, op: opCreate, key: EventKey(name, opCreate, "1"), sent: sent})
	}
	r := recorderAt(times...)
	for _, wr := range writes {
		r.Line([]byte(`{"operation":"OPERATION_CREATED","object":{"name":"` + wr.pod + `","resourceVersion":"1"}}`))
	}
	// Shuffled order must not matter: the tenths go by the time sent.
	writes[0], writes[99] = writes[99], writes[0]
	early, late := tenths(writes, r)
	if !near(early, 0.004) || !near(late, 0.094) {
		t.Errorf("tenths %v / %v, want 0.004 / 0.094", early, late)
	}
}
