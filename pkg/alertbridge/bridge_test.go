package alertbridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

var now = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const gi = int64(1) << 30

// fakeAM is an Alertmanager v2 endpoint that checks the request and keeps
// every posted alert. respond, when set, picks the status of each request.
type fakeAM struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	posts   [][]map[string]any
	respond func(n int) int
	token   string
}

func newFakeAM(t *testing.T) *fakeAM {
	am := &fakeAM{t: t}
	am.srv = httptest.NewServer(http.HandlerFunc(am.serve))
	t.Cleanup(am.srv.Close)
	return am
}

func (am *fakeAM) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		http.Error(w, "content type "+ct, http.StatusBadRequest)
		return
	}
	if am.token != "" && r.Header.Get("Authorization") != "Bearer "+am.token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var alerts []map[string]any
	if err := json.Unmarshal(body, &alerts); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := validAlerts(alerts); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	am.mu.Lock()
	n := len(am.posts)
	status := http.StatusOK
	if am.respond != nil {
		status = am.respond(n)
	}
	if status == http.StatusOK {
		am.posts = append(am.posts, alerts)
	}
	am.mu.Unlock()
	w.WriteHeader(status)
}

// validAlerts applies Alertmanager's postableAlert schema: labels required
// and non-empty, only known fields, RFC 3339 times, endsAt not before
// startsAt.
func validAlerts(alerts []map[string]any) error {
	known := map[string]bool{"labels": true, "annotations": true, "startsAt": true, "endsAt": true, "generatorURL": true}
	for i, a := range alerts {
		for k := range a {
			if !known[k] {
				return fmt.Errorf("alert %d: unknown field %q", i, k)
			}
		}
		labels, ok := a["labels"].(map[string]any)
		if !ok || len(labels) == 0 {
			return fmt.Errorf("alert %d: no labels", i)
		}
		for k, v := range labels {
			if s, ok := v.(string); !ok || s == "" || k == "" {
				return fmt.Errorf("alert %d: label %q=%v", i, k, v)
			}
		}
		var starts, ends time.Time
		for field, dst := range map[string]*time.Time{"startsAt": &starts, "endsAt": &ends} {
			if v, ok := a[field]; ok {
				t, err := time.Parse(time.RFC3339, v.(string))
				if err != nil {
					return fmt.Errorf("alert %d: %s: %v", i, field, err)
				}
				*dst = t
			}
		}
		if !starts.IsZero() && !ends.IsZero() && ends.Before(starts) {
			return fmt.Errorf("alert %d: endsAt before startsAt", i)
		}
	}
	return nil
}

func (am *fakeAM) all() [][]map[string]any {
	am.mu.Lock()
	defer am.mu.Unlock()
	return append([][]map[string]any(nil), am.posts...)
}

// render shows a POST as "severity:state" items, sorted: "critical:resolved warning:firing".
func render(post []map[string]any) string {
	var parts []string
	for _, a := range post {
		l := a["labels"].(map[string]any)
		ends, _ := time.Parse(time.RFC3339, a["endsAt"].(string))
		state := "firing"
		if !ends.After(now) {
			state = "resolved"
		}
		parts = append(parts, fmt.Sprintf("%s/%s:%s", l["node"], l["severity"], state))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

type evOpt func(*kubestreamv1.ImageStorage)

func storageEvent(node string, sev, prev kubestreamv1.Severity, tr kubestreamv1.AlertTransition, opts ...evOpt) *kubestreamv1.Event {
	is := &kubestreamv1.ImageStorage{
		Node: node, TotalBytes: 41 * gi, PreviousTotalBytes: 30 * gi, DeltaBytes: 11 * gi, ImageCount: 12,
		EphemeralStorageCapacityBytes: 100 * gi, CapacityShare: 0.41,
		Severity: sev, PreviousSeverity: prev, Transition: tr,
		Reason:    "image bytes 41GiB >= critical 40GiB",
		TopImages: []*kubestreamv1.Image{{Names: []string{"reg/big@sha256:00", "reg/big:v1"}, SizeBytes: 20 * gi}, {Names: []string{"reg/small:v2"}, SizeBytes: gi}},
	}
	for _, o := range opts {
		o(is)
	}
	return &kubestreamv1.Event{
		Id: "id-" + node + "-" + sev.String(), SchemaVersion: 1, Operation: kubestreamv1.Operation_OPERATION_UPDATED,
		Cluster: "prod", ObservedAt: timestamppb.New(now.Add(-time.Minute)),
		Object:  &kubestreamv1.ObjectRef{Version: "v1", Kind: "Node", Name: node, Uid: "u-" + node},
		Payload: &kubestreamv1.Event_ImageStorage{ImageStorage: is},
	}
}

func encode(t *testing.T, ev *kubestreamv1.Event) []byte {
	t.Helper()
	b, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newBridge(am *fakeAM, urls ...string) *Bridge {
	if len(urls) == 0 {
		urls = []string{am.srv.URL}
	}
	return New(&Client{URLs: urls, BearerToken: am.token}, Options{
		Now: func() time.Time { return now }, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
		ExtraLabels: map[string]string{"team": "platform"}, GeneratorURL: "https://grafana.example/d/nodes",
	})
}

const (
	unspec   = kubestreamv1.Severity_SEVERITY_UNSPECIFIED
	ok       = kubestreamv1.Severity_SEVERITY_OK
	warning  = kubestreamv1.Severity_SEVERITY_WARNING
	critical = kubestreamv1.Severity_SEVERITY_CRITICAL
	none     = kubestreamv1.AlertTransition_ALERT_TRANSITION_NONE
	firing   = kubestreamv1.AlertTransition_ALERT_TRANSITION_FIRING
	resolved = kubestreamv1.AlertTransition_ALERT_TRANSITION_RESOLVED
	down     = kubestreamv1.AlertTransition_ALERT_TRANSITION_DOWNGRADED
)

func TestAlertmanagerPayload(t *testing.T) {
	am := newFakeAM(t)
	am.token = "s3cret"
	b := newBridge(am)
	if err := b.Handle(context.Background(), encode(t, storageEvent("worker-1", critical, warning, firing, func(is *kubestreamv1.ImageStorage) {
		is.LowerBound, is.MaxImages = true, 50
	})), nil); err != nil {
		t.Fatal(err)
	}
	posts := am.all()
	if len(posts) != 1 || len(posts[0]) != 2 {
		t.Fatalf("posts = %v", posts)
	}
	fire := posts[0][0]
	wantLabels := map[string]any{"alertname": "KubestreamImageStorage", "node": "worker-1", "cluster": "prod", "severity": "critical", "team": "platform"}
	if fmt.Sprint(fire["labels"]) != fmt.Sprint(wantLabels) {
		t.Fatalf("labels = %v", fire["labels"])
	}
	if fire["startsAt"] != "2030-01-02T03:03:05Z" || fire["endsAt"] != "2030-01-02T04:04:05Z" || fire["generatorURL"] != "https://grafana.example/d/nodes" {
		t.Fatalf("times/url = %v %v %v", fire["startsAt"], fire["endsAt"], fire["generatorURL"])
	}
	ann := fire["annotations"].(map[string]any)
	for k, want := range map[string]string{
		"summary":        "Container images on node worker-1 take 41GiB (41.0% of ephemeral-storage capacity): at critical",
		"reason":         "image bytes 41GiB >= critical 40GiB",
		"total":          "41GiB",
		"total_bytes":    "44023414784",
		"delta":          "+11GiB",
		"previous_total": "30GiB",
		"capacity_share": "41.0%",
		"top_images":     "reg/big:v1 20GiB, reg/small:v2 1GiB",
		"transition":     "firing",
		"image_count":    "12",
		"lower_bound":    "true: the node reports only its 50 largest images, totals may be higher",
	} {
		if ann[k] != want {
			t.Errorf("annotation %s = %q, want %q", k, ann[k], want)
		}
	}
	other := posts[0][1]
	if other["labels"].(map[string]any)["severity"] != "warning" || other["endsAt"] != "2030-01-02T03:04:05Z" {
		t.Fatalf("the warning alert was not resolved: %v", other)
	}
}

func TestAlertLifecycle(t *testing.T) {
	am := newFakeAM(t)
	b := newBridge(am)
	steps := []struct {
		ev   *kubestreamv1.Event
		want string // the POST, or "" for none
	}{
		{storageEvent("n1", ok, unspec, none), ""},
		{storageEvent("n1", ok, ok, none), ""},
		{storageEvent("n1", warning, ok, firing), "n1/critical:resolved n1/warning:firing"},
		{storageEvent("n1", warning, warning, none), "n1/critical:resolved n1/warning:firing"},
		{storageEvent("n1", critical, warning, firing), "n1/critical:firing n1/warning:resolved"},
		{storageEvent("n1", warning, critical, down), "n1/critical:resolved n1/warning:firing"},
		{storageEvent("n1", ok, warning, resolved), "n1/critical:resolved n1/warning:resolved"},
		{storageEvent("n1", ok, ok, none), ""},
		{storageEvent("n2", critical, unspec, firing), "n2/critical:firing n2/warning:resolved"},
		{storageEvent("n2", ok, critical, none, func(is *kubestreamv1.ImageStorage) { is.NodeDeleted, is.Transition = true, resolved }), "n2/critical:resolved n2/warning:resolved"},
	}
	var got []string
	for i, s := range steps {
		before := len(am.all())
		if err := b.Handle(context.Background(), encode(t, s.ev), nil); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		posts := am.all()
		switch {
		case s.want == "" && len(posts) != before:
			t.Fatalf("step %d posted %s", i, render(posts[len(posts)-1]))
		case s.want != "" && (len(posts) != before+1 || render(posts[before]) != s.want):
			t.Fatalf("step %d: posts %v, want %s", i, posts[before:], s.want)
		}
		if s.want != "" {
			got = append(got, render(posts[before]))
		}
	}
	if b.Firing() != 0 {
		t.Fatalf("%d alerts still tracked after all resolved", b.Firing())
	}
	// startsAt of a still-firing alert stays where it began.
	b2 := newBridge(am)
	first := storageEvent("n3", warning, ok, firing)
	later := storageEvent("n3", warning, warning, none)
	later.ObservedAt = timestamppb.New(now)
	for _, ev := range []*kubestreamv1.Event{first, later} {
		if err := b2.Handle(context.Background(), encode(t, ev), nil); err != nil {
			t.Fatal(err)
		}
	}
	posts := am.all()
	if s := posts[len(posts)-1][0]["startsAt"]; s != "2030-01-02T03:03:05Z" {
		t.Fatalf("startsAt moved to %v", s)
	}
}

func TestResendsFiringAlerts(t *testing.T) {
	am := newFakeAM(t)
	clock := now
	b := New(&Client{URLs: []string{am.srv.URL}}, Options{Now: func() time.Time { return clock }, AlertTTL: 10 * time.Minute})
	ctx := context.Background()
	for _, ev := range []*kubestreamv1.Event{storageEvent("n1", warning, ok, firing), storageEvent("n2", critical, ok, firing), storageEvent("n3", ok, ok, none)} {
		if err := b.Handle(ctx, encode(t, ev), nil); err != nil {
			t.Fatal(err)
		}
	}
	clock = now.Add(5 * time.Minute)
	b.Resend(ctx)
	posts := am.all()
	last := posts[len(posts)-1]
	if len(last) != 2 {
		t.Fatalf("re-sent %d alerts, want the 2 firing ones", len(last))
	}
	for _, a := range last {
		if a["endsAt"] != "2030-01-02T03:19:05Z" || a["startsAt"] != "2030-01-02T03:03:05Z" {
			t.Fatalf("re-sent alert %v: want endsAt renewed, startsAt kept", a)
		}
	}
	if err := b.Handle(ctx, encode(t, storageEvent("n1", ok, warning, resolved)), nil); err != nil {
		t.Fatal(err)
	}
	b.Resend(ctx)
	posts = am.all()
	if last := posts[len(posts)-1]; len(last) != 1 || last[0]["labels"].(map[string]any)["node"] != "n2" {
		t.Fatalf("after n1 resolved, re-sent %v", last)
	}
}

func TestRetriesUntilAlertmanagerAccepts(t *testing.T) {
	am := newFakeAM(t)
	attempts := 0
	am.respond = func(int) int {
		attempts++
		if attempts <= 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	b := newBridge(am)
	progress := 0
	if err := b.Handle(context.Background(), encode(t, storageEvent("n1", warning, ok, firing)), func() { progress++ }); err != nil {
		t.Fatal(err)
	}
	if attempts != 4 || progress != 3 || len(am.all()) != 1 || b.Stats().Retries != 3 || b.Stats().Posts != 1 {
		t.Fatalf("attempts %d progress %d posts %d stats %+v", attempts, progress, len(am.all()), b.Stats())
	}
}

func TestGivesUpOnlyWhenStopped(t *testing.T) {
	am := newFakeAM(t)
	ctx, cancel := context.WithCancel(context.Background())
	am.respond = func(n int) int {
		if n == 0 {
			cancel() // stop while Alertmanager is down
		}
		return http.StatusBadGateway
	}
	// A down Alertmanager answers nothing useful; respond's n stays 0 as
	// failed posts are not kept.
	b := newBridge(am)
	err := b.Handle(ctx, encode(t, storageEvent("n1", warning, ok, firing)), nil)
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Handle = %v, want a cancellation error so the message is not acked", err)
	}
	if b.Firing() != 0 {
		t.Fatal("an alert that was never accepted is tracked as firing")
	}
}

func TestRejectedAndUndecodableMessagesAreDropped(t *testing.T) {
	am := newFakeAM(t)
	am.respond = func(int) int { return http.StatusBadRequest }
	b := newBridge(am)
	ctx := context.Background()
	if err := b.Handle(ctx, encode(t, storageEvent("n1", warning, ok, firing)), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Handle(ctx, []byte("\xff\xff not an event"), nil); err != nil {
		t.Fatal(err)
	}
	notStorage := &kubestreamv1.Event{Id: "x", Payload: &kubestreamv1.Event_Replay{Replay: &kubestreamv1.ReplayMarker{ReplayId: "r"}}}
	if err := b.Handle(ctx, encode(t, notStorage), nil); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Rejected != 1 || st.Skipped != 2 || st.Events != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestJSONEventsAreAccepted(t *testing.T) {
	am := newFakeAM(t)
	b := newBridge(am)
	js, err := protojson.Marshal(storageEvent("n1", warning, ok, firing))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Handle(context.Background(), js, nil); err != nil {
		t.Fatal(err)
	}
	if len(am.all()) != 1 {
		t.Fatal("a protojson event (stdout sink) was not handled")
	}
}

func TestOneOfSeveralAlertmanagersIsEnough(t *testing.T) {
	am := newFakeAM(t)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer down.Close()
	b := newBridge(am, down.URL, am.srv.URL)
	if err := b.Handle(context.Background(), encode(t, storageEvent("n1", warning, ok, firing)), nil); err != nil {
		t.Fatal(err)
	}
	if len(am.all()) != 1 || b.Stats().Retries != 0 {
		t.Fatalf("posts %d stats %+v", len(am.all()), b.Stats())
	}
}

func TestTrackedAlertsAreBounded(t *testing.T) {
	am := newFakeAM(t)
	b := New(&Client{URLs: []string{am.srv.URL}}, Options{Now: func() time.Time { return now }, MaxTracked: 3})
	for i := range 10 {
		if err := b.Handle(context.Background(), encode(t, storageEvent(fmt.Sprintf("n%d", i), warning, ok, firing)), nil); err != nil {
			t.Fatal(err)
		}
	}
	if b.Firing() != 3 {
		t.Fatalf("tracking %d alerts, bound 3", b.Firing())
	}
}
