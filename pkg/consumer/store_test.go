package consumer_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/consumer"
)

const (
	created  = kubestreamv1.Operation_OPERATION_CREATED
	updated  = kubestreamv1.Operation_OPERATION_UPDATED
	deleted  = kubestreamv1.Operation_OPERATION_DELETED
	snapshot = kubestreamv1.Operation_OPERATION_SNAPSHOT
	begin    = kubestreamv1.Operation_OPERATION_REPLAY_BEGIN
	end      = kubestreamv1.Operation_OPERATION_REPLAY_END
)

// podEvent is an event of pod name (uid, rv) in cluster c, carrying the
// pod's protobuf state.
func podEvent(t *testing.T, c string, op kubestreamv1.Operation, name, uid, rv string, lbls map[string]string) *kubestreamv1.Event {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: "u", ResourceVersion: rv, Labels: lbls},
		Spec: corev1.PodSpec{NodeName: "node-" + rv}}
	state, err := pod.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ch := &kubestreamv1.ObjectChange{ContentType: kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF, TypeName: "k8s.io.api.core.v1.Pod"}
	if op == deleted {
		ch.Previous = state
	} else {
		ch.Object = state
	}
	return &kubestreamv1.Event{Id: fmt.Sprintf("%s/%s/%s/%s", c, uid, rv, op), Cluster: c, Operation: op,
		Object:  &kubestreamv1.ObjectRef{Version: "v1", Kind: "Pod", Resource: "pods", Namespace: "ns", Name: name, Uid: uid, ResourceVersion: rv, Labels: lbls},
		Payload: &kubestreamv1.Event_Change{Change: ch}}
}

func marker(c string, op kubestreamv1.Operation, id string, reason kubestreamv1.ReplayReason) *kubestreamv1.Event {
	return &kubestreamv1.Event{Id: c + "/" + id + "/" + op.String(), Cluster: c, Operation: op, ReplayId: id,
		Payload: &kubestreamv1.Event_Replay{Replay: &kubestreamv1.ReplayMarker{ReplayId: id, Kinds: []string{"pods"}, Reason: reason}}}
}

// recorder logs handler calls as short lines.
type recorder struct{ calls []string }

func (r *recorder) OnAdd(o *consumer.Object, initial bool) {
	r.calls = append(r.calls, fmt.Sprintf("add %s/%s@%s initial=%v", o.Cluster, o.Name, o.ResourceVersion, initial))
}
func (r *recorder) OnUpdate(old, o *consumer.Object) {
	r.calls = append(r.calls, fmt.Sprintf("update %s/%s %s->%s", o.Cluster, o.Name, old.ResourceVersion, o.ResourceVersion))
}
func (r *recorder) OnDelete(o *consumer.Object) {
	r.calls = append(r.calls, fmt.Sprintf("delete %s/%s@%s unknown=%v", o.Cluster, o.Name, o.ResourceVersion, o.FinalStateUnknown))
}

func TestStoreHandlersDedupeAndSync(t *testing.T) {
	s := consumer.NewStore(consumer.Options{})
	rec := &recorder{}
	s.AddHandler(rec)
	app := map[string]string{"app": "web"}
	steps := []*kubestreamv1.Event{
		marker("east", begin, "r1", kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL),
		podEvent(t, "east", snapshot, "a", "ua", "1", app),
		podEvent(t, "east", snapshot, "b", "ub", "2", nil),
		podEvent(t, "west", created, "a", "wa", "7", app), // another cluster, same name
		marker("east", end, "r1", kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL),
		podEvent(t, "east", updated, "a", "ua", "3", app),
		podEvent(t, "east", updated, "a", "ua", "3", app), // a redelivery
		// A periodic round of east that no longer mentions b: b is dropped;
		// west's objects are not east's round's business.
		marker("east", begin, "r2", kubestreamv1.ReplayReason_REPLAY_REASON_RESYNC),
		podEvent(t, "east", snapshot, "a", "ua", "3", app),
		marker("east", end, "r2", kubestreamv1.ReplayReason_REPLAY_REASON_RESYNC),
		podEvent(t, "west", deleted, "a", "wa", "8", app),
	}
	applied := 0
	var syncedAfter []bool
	for _, ev := range steps {
		if s.Apply("pods/0", ev) {
			applied++
		}
		syncedAfter = append(syncedAfter, s.Synced("east"))
	}
	want := []string{
		"add east/a@1 initial=true", "add east/b@2 initial=true", "add west/a@7 initial=false",
		"update east/a 1->3", "update east/a 3->3", "delete east/b@2 unknown=true", "delete west/a@8 unknown=false",
	}
	if got := strings.Join(rec.calls, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("handler calls:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if applied != len(steps)-1 || s.Stats().Duplicates != 1 {
		t.Errorf("applied %d of %d, duplicates %d: want the one redelivery dropped", applied, len(steps), s.Stats().Duplicates)
	}
	if fmt.Sprint(syncedAfter) != "[false false false false true true true true true true true]" {
		t.Errorf("east synced after each step: %v, want true from its first round's end", syncedAfter)
	}
	if s.Synced("west") || s.HasSynced() {
		t.Errorf("west saw no round: it must not count as synced (west %v, all %v)", s.Synced("west"), s.HasSynced())
	}
	if got := s.List("", "pods", nil); len(got) != 1 || got[0].Cluster != "east" || got[0].Name != "a" {
		t.Fatalf("List = %v, want east's pod a", got)
	}
	o, ok := s.Get("east", "pods", "ns", "a")
	if !ok || o.ResourceVersion != "3" {
		t.Fatalf("Get(east, pods, ns, a) = %v, %v", o, ok)
	}
	pod, err := o.Pod()
	if err != nil || pod.Spec.NodeName != "node-3" || pod.Kind != "Pod" {
		t.Fatalf("typed pod: %v, %v", pod, err)
	}
	u, err := o.Unstructured()
	if err != nil || u.GetAPIVersion() != "v1" || u.GetName() != "a" {
		t.Fatalf("unstructured: %v, %v", u, err)
	}
	if _, err := o.Node(); err == nil {
		t.Error("a pod read as a Node: want an error")
	}
	sel := labels.SelectorFromSet(labels.Set{"app": "web"})
	if got := s.List("east", "pods", sel); len(got) != 1 {
		t.Errorf("List by label app=web: %d objects, want 1", len(got))
	}
	if got := s.List("east", "pods", labels.SelectorFromSet(labels.Set{"app": "db"})); len(got) != 0 {
		t.Errorf("List by label app=db: %d objects, want 0", len(got))
	}
	if fmt.Sprint(s.Clusters()) != "[east west]" || fmt.Sprint(s.Dropped("east")) != "[ub]" || !s.Deleted("west", "wa") {
		t.Errorf("clusters %v, dropped %v, west deleted wa %v", s.Clusters(), s.Dropped("east"), s.Deleted("west", "wa"))
	}
}

func TestStoreReCreateUnderTheSameName(t *testing.T) {
	s := consumer.NewStore(consumer.Options{})
	s.Apply("p", podEvent(t, "c", created, "a", "u1", "1", nil))
	// The consumer missed u1's DELETED: the new uid wins Get, both are held
	// until a round or the delete settles it.
	s.Apply("p", podEvent(t, "c", created, "a", "u2", "2", nil))
	if o, _ := s.Get("c", "pods", "ns", "a"); o.UID != "u2" {
		t.Fatalf("Get after a re-create = %s, want u2", o.UID)
	}
	s.Apply("p", podEvent(t, "c", deleted, "a", "u1", "3", nil))
	if o, ok := s.Get("c", "pods", "ns", "a"); !ok || o.UID != "u2" || len(s.List("c", "pods", nil)) != 1 {
		t.Fatalf("after u1's delete: %v %v, %d objects", o, ok, len(s.List("c", "pods", nil)))
	}
}

func TestObjectDecodesJSONAndCustomResources(t *testing.T) {
	cr := map[string]any{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": map[string]any{"name": "w", "namespace": "ns"}, "spec": map[string]any{"size": 3}}
	data, _ := json.Marshal(cr)
	// Kinds other than the core group's and the typed ones are named
	// <plural>.<group> on the wire.
	ev := &kubestreamv1.Event{Id: "1", Cluster: "c", Operation: created,
		Object:  &kubestreamv1.ObjectRef{Group: "example.com", Version: "v1", Kind: "Widget", Resource: "widgets.example.com", Namespace: "ns", Name: "w", Uid: "uw", ResourceVersion: "1"},
		Payload: &kubestreamv1.Event_Change{Change: &kubestreamv1.ObjectChange{ContentType: kubestreamv1.ContentType_CONTENT_TYPE_JSON, Object: data}}}
	s := consumer.NewStore(consumer.Options{})
	s.Apply("widgets", ev)
	o, ok := s.Get("c", "widgets.example.com", "ns", "w")
	if !ok || o.Key() != "widgets.example.com/ns/w" {
		t.Fatal("custom resource not found by resource.group")
	}
	u, err := o.Unstructured()
	if err != nil {
		t.Fatal(err)
	}
	if size, _, _ := unstructuredInt(u.Object, "spec", "size"); size != 3 {
		t.Errorf("spec.size = %d, want 3", size)
	}
	if _, ok := s.Get("c", "widgets.other.io", "ns", "w"); ok {
		t.Error("found under another group")
	}
	if o, ok := s.Get("c", "widgets", "ns", "w"); !ok || len(s.List("c", "widgets", nil)) != 1 || len(s.List("c", "widgets.example.com", nil)) != 1 {
		t.Errorf("the plural alone: Get %v %v, List %d", o, ok, len(s.List("c", "widgets", nil)))
	}
	meta := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", Labels: map[string]string{"a": "b"}}}
	metaBytes, _ := meta.Marshal()
	s.Apply("secrets", &kubestreamv1.Event{Id: "4", Cluster: "c", Operation: created,
		Object: &kubestreamv1.ObjectRef{Version: "v1", Kind: "Secret", Resource: "secrets", Namespace: "ns", Name: "s", Uid: "us"},
		Payload: &kubestreamv1.Event_Change{Change: &kubestreamv1.ObjectChange{ContentType: kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF,
			TypeName: "k8s.io.apimachinery.pkg.apis.meta.v1.PartialObjectMetadata", Object: metaBytes}}})
	o, _ = s.Get("c", "secrets", "ns", "s")
	if u, err := o.Unstructured(); err != nil || u.GetKind() != "Secret" || u.GetLabels()["a"] != "b" {
		t.Errorf("metadata-only secret: %v, %v", u, err)
	}
	cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns"}, Data: map[string]string{"k": "v"}}
	data, _ = json.Marshal(cm)
	s.Apply("cms", &kubestreamv1.Event{Id: "2", Cluster: "c", Operation: created,
		Object:  &kubestreamv1.ObjectRef{Version: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespace: "ns", Name: "c", Uid: "uc"},
		Payload: &kubestreamv1.Event_Change{Change: &kubestreamv1.ObjectChange{ContentType: kubestreamv1.ContentType_CONTENT_TYPE_JSON, Object: data}}})
	o, _ = s.Get("c", "configmaps", "ns", "c")
	got, err := o.ConfigMap()
	if err != nil || got.Data["k"] != "v" {
		t.Fatalf("typed config map from JSON: %v, %v", got, err)
	}
	truncated := &kubestreamv1.Event{Id: "3", Cluster: "c", Operation: created,
		Object:  &kubestreamv1.ObjectRef{Version: "v1", Kind: "Pod", Resource: "pods", Name: "big", Uid: "ub"},
		Payload: &kubestreamv1.Event_Change{Change: &kubestreamv1.ObjectChange{Truncated: true}}}
	s.Apply("pods", truncated)
	o, _ = s.Get("c", "pods", "", "big")
	if _, err := o.Pod(); err == nil || !strings.Contains(err.Error(), "no object state") {
		t.Errorf("truncated pod: err %v, want ErrNoState", err)
	}
}

func unstructuredInt(m map[string]any, path ...string) (int64, bool, error) {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return 0, false, nil
		}
		cur = mm[p]
	}
	switch v := cur.(type) {
	case int64:
		return v, true, nil
	case float64:
		return int64(v), true, nil
	}
	return 0, false, nil
}

func TestStoreWaitsForAnnouncedBacklogs(t *testing.T) {
	s := consumer.NewStore(consumer.Options{})
	s.Expect("pods/0")
	s.Expect("pods/1")
	s.Apply("pods/0", marker("c", begin, "r", kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL))
	s.Apply("pods/0", marker("c", end, "r", kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL))
	s.CaughtUp("pods/0")
	// pods/1 has delivered nothing yet: its copy of the round is still to come.
	if s.HasSynced() {
		t.Fatal("synced while partition pods/1's backlog is unread")
	}
	s.Apply("pods/1", marker("c", begin, "r", kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL))
	s.CaughtUp("pods/1") // a reader that skipped ahead without the end
	if s.HasSynced() {
		t.Fatal("synced while pods/1's round is open")
	}
	s.Apply("pods/1", marker("c", end, "r", kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL))
	if !s.HasSynced() {
		t.Fatal("not synced after both partitions' rounds and backlogs")
	}
}
