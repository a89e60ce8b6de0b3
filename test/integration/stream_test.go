// Package integration runs kubestream in-process against a real etcd and
// kube-apiserver and asserts the exact event stream a workload produces.
package integration

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubestream/kubestream/internal/controlplane"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/app"
	"github.com/kubestream/kubestream/pkg/imagestorage"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/pipeline"
	"github.com/kubestream/kubestream/pkg/source"
)

var cp *controlplane.ControlPlane

func TestMain(m *testing.M) {
	var err error
	cp, err = controlplane.Start(context.Background(), controlplane.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start control plane: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	cp.Stop()
	os.Exit(code)
}

// recorder is a sink that keeps every acknowledged event in order.
type recorder struct {
	mu     sync.Mutex
	events []*kubestreamv1.Event
	closed bool
}

func (r *recorder) Publish(_ context.Context, evs []*kubestreamv1.Event) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, evs...)
	return nil
}

func (r *recorder) Close(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

func (r *recorder) snapshot() []*kubestreamv1.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// waitFor polls until some event satisfies match and returns it.
func (r *recorder) waitFor(t *testing.T, what string, match func(*kubestreamv1.Event) bool) *kubestreamv1.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range r.snapshot() {
			if match(ev) {
				return ev
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no event %s within 30s; got:\n%s", what, describe(r.snapshot()))
	return nil
}

func describe(evs []*kubestreamv1.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintln(&b, line(ev))
	}
	return b.String()
}

// line renders an event as one readable line.
func line(ev *kubestreamv1.Event) string {
	op := strings.TrimPrefix(ev.GetOperation().String(), "OPERATION_")
	if r := ev.GetReplay(); r != nil {
		return fmt.Sprintf("%s %s kinds=%v counts=%v", op, r.GetReason(), r.GetKinds(), r.GetObjectCounts())
	}
	o := ev.GetObject()
	s := fmt.Sprintf("%s %s %s/%s", op, o.GetKind(), o.GetNamespace(), o.GetName())
	if p := ev.GetChange().GetChangedPaths(); len(p) > 0 {
		s += " " + strings.Join(p, ",")
	}
	return s
}

type stream struct {
	rec    *recorder
	cancel context.CancelFunc
	done   chan error
}

func startStream(t *testing.T, cfg app.Config) *stream {
	t.Helper()
	cfg.Kubeconfig = cp.Kubeconfig
	if cfg.ClusterName == "" {
		cfg.ClusterName = "it"
	}
	if cfg.Kinds == nil {
		cfg.Kinds = kinds.All()
	}
	cfg.Instance = "test"
	cfg.Pipeline = pipeline.Options{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	s := &stream{rec: &recorder{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.done <- app.Run(ctx, cfg, func(context.Context, []string) (app.Sink, error) { return s.rec, nil })
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *stream) stop() {
	s.cancel()
	<-s.done
	s.done <- nil // later stops return at once
}

func client(t *testing.T) kubernetes.Interface {
	t.Helper()
	return kubernetes.NewForConfigOrDie(cp.RestConfig())
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// createNamespace creates a namespace named prefix plus a suffix unique in
// this control plane, so tests can run repeatedly (-count) against it.
func createNamespace(t *testing.T, cs kubernetes.Interface, prefix string) string {
	t.Helper()
	ns := must[*corev1.Namespace](t)(cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{}))
	return ns.Name
}

// eventsOf returns the events of one object, in order.
func eventsOf(evs []*kubestreamv1.Event, kind, ns, name string) []*kubestreamv1.Event {
	var out []*kubestreamv1.Event
	for _, ev := range evs {
		if o := ev.GetObject(); o.GetKind() == kind && o.GetNamespace() == ns && o.GetName() == name && ev.GetImageStorage() == nil {
			out = append(out, ev)
		}
	}
	return out
}

func ops(evs []*kubestreamv1.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = strings.TrimPrefix(ev.GetOperation().String(), "OPERATION_")
	}
	return out
}

func isOp(op kubestreamv1.Operation, kind, ns, name, rv string) func(*kubestreamv1.Event) bool {
	return func(ev *kubestreamv1.Event) bool {
		o := ev.GetObject()
		return ev.GetOperation() == op && o.GetKind() == kind && o.GetNamespace() == ns && o.GetName() == name && (rv == "" || o.GetResourceVersion() == rv)
	}
}

func TestStreamOfAWorkload(t *testing.T) {
	ctx := context.Background()
	cs := client(t)
	shop := createNamespace(t, cs, "shop")
	// Present before kubestream starts: must arrive as snapshots.
	preCM := must[*corev1.ConfigMap](t)(cs.CoreV1().ConfigMaps(shop).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "app.properties", Labels: map[string]string{"app.kubernetes.io/name": shop}},
		Data:       map[string]string{"log.level": "info"},
	}, metav1.CreateOptions{}))
	node := must[*corev1.Node](t)(cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{"pool": "general"}},
		Status: corev1.NodeStatus{
			Capacity:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceEphemeralStorage: resource.MustParse("100Gi")},
			Images:     []corev1.ContainerImage{{Names: []string{"registry.example/web:1"}, SizeBytes: 300 << 20}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}, metav1.CreateOptions{}))
	t.Cleanup(func() { _ = cs.CoreV1().Nodes().Delete(ctx, "node-a", metav1.DeleteOptions{}) })

	s := startStream(t, app.Config{})
	rec := s.rec
	end := rec.waitFor(t, "closing the initial round", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END
	})
	initial := rec.snapshot()
	if first := initial[0]; first.GetOperation() != kubestreamv1.Operation_OPERATION_REPLAY_BEGIN || first.GetReplay().GetReason() != kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL {
		t.Fatalf("first event %s, want the initial round's begin marker", line(first))
	}
	roundID := end.GetReplayId()
	for _, want := range []struct{ kind, ns, name string }{{"ConfigMap", shop, "app.properties"}, {"Node", "", "node-a"}} {
		evs := eventsOf(initial, want.kind, want.ns, want.name)
		if len(evs) != 1 || evs[0].GetOperation() != kubestreamv1.Operation_OPERATION_SNAPSHOT || evs[0].GetReplayId() != roundID {
			t.Fatalf("%s %s/%s: %v, want one snapshot in round %s", want.kind, want.ns, want.name, ops(evs), roundID)
		}
	}
	if got := end.GetReplay().GetObjectCounts()["nodes"]; got != 1 {
		t.Fatalf("end marker counts %d nodes, want 1", got)
	}
	if ns := eventsOf(initial, "Node", "", "node-a")[0].GetChange().GetNode(); ns.GetImageBytes() != 300<<20 || !ns.GetReady() {
		t.Fatalf("node summary %v", ns)
	}

	// Live changes.
	cm := preCM.DeepCopy()
	cm.Data["log.level"] = "debug"
	cm = must[*corev1.ConfigMap](t)(cs.CoreV1().ConfigMaps(shop).Update(ctx, cm, metav1.UpdateOptions{}))
	rec.waitFor(t, "config map update", isOp(kubestreamv1.Operation_OPERATION_UPDATED, "ConfigMap", shop, "app.properties", cm.ResourceVersion))
	must[struct{}](t)(struct{}{}, cs.CoreV1().ConfigMaps(shop).Delete(ctx, "app.properties", metav1.DeleteOptions{}))
	rec.waitFor(t, "config map delete", isOp(kubestreamv1.Operation_OPERATION_DELETED, "ConfigMap", shop, "app.properties", ""))

	pod := must[*corev1.Pod](t)(cs.CoreV1().Pods(shop).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1"}}},
	}, metav1.CreateOptions{}))
	rec.waitFor(t, "pod create", isOp(kubestreamv1.Operation_OPERATION_CREATED, "Pod", shop, "web-0", pod.ResourceVersion))
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "web", Image: "registry.example/web:1", RestartCount: 3, Ready: true}}
	pod = must[*corev1.Pod](t)(cs.CoreV1().Pods(shop).UpdateStatus(ctx, pod, metav1.UpdateOptions{}))
	podRunning := rec.waitFor(t, "pod status update", isOp(kubestreamv1.Operation_OPERATION_UPDATED, "Pod", shop, "web-0", pod.ResourceVersion))
	pod = must[*corev1.Pod](t)(cs.CoreV1().Pods(shop).Patch(ctx, "web-0", types.MergePatchType, []byte(`{"metadata":{"labels":{"tier":"front"}}}`), metav1.PatchOptions{}))
	podLabelled := rec.waitFor(t, "pod label patch", isOp(kubestreamv1.Operation_OPERATION_UPDATED, "Pod", shop, "web-0", pod.ResourceVersion))
	zero := int64(0)
	must[struct{}](t)(struct{}{}, cs.CoreV1().Pods(shop).Delete(ctx, "web-0", metav1.DeleteOptions{GracePeriodSeconds: &zero}))
	podDeleted := rec.waitFor(t, "pod delete", isOp(kubestreamv1.Operation_OPERATION_DELETED, "Pod", shop, "web-0", ""))

	replicas := int32(3)
	dep := must[*appsv1.Deployment](t)(cs.AppsV1().Deployments(shop).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:2"}}},
			},
		},
	}, metav1.CreateOptions{}))
	rec.waitFor(t, "deployment create", isOp(kubestreamv1.Operation_OPERATION_CREATED, "Deployment", shop, "web", dep.ResourceVersion))
	dep = must[*appsv1.Deployment](t)(cs.AppsV1().Deployments(shop).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{}))
	depScaled := rec.waitFor(t, "deployment scale", isOp(kubestreamv1.Operation_OPERATION_UPDATED, "Deployment", shop, "web", dep.ResourceVersion))

	node = must[*corev1.Node](t)(cs.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{}))
	node.Status.Images = append(node.Status.Images, corev1.ContainerImage{Names: []string{"registry.example/db:7"}, SizeBytes: 700 << 20})
	node = must[*corev1.Node](t)(cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}))
	nodeImages := rec.waitFor(t, "node images update", isOp(kubestreamv1.Operation_OPERATION_UPDATED, "Node", "", "node-a", node.ResourceVersion))

	all := rec.snapshot()
	check := func(kind, ns, name string, want []string) {
		t.Helper()
		if got := ops(eventsOf(all, kind, ns, name)); !slices.Equal(got, want) {
			t.Errorf("%s %s/%s: %v, want %v", kind, ns, name, got, want)
		}
	}
	check("ConfigMap", shop, "app.properties", []string{"SNAPSHOT", "UPDATED", "DELETED"})
	// The apiserver marks the pod terminating (an update) and deletes it
	// within a millisecond: the pipeline may fold that update into the
	// delete, whose final state then shows the pod terminating.
	podOps := ops(eventsOf(all, "Pod", shop, "web-0"))
	if !slices.Equal(podOps, []string{"CREATED", "UPDATED", "UPDATED", "UPDATED", "DELETED"}) &&
		!slices.Equal(podOps, []string{"CREATED", "UPDATED", "UPDATED", "DELETED"}) {
		t.Errorf("Pod shop/web-0: %v, want created, two updates, (terminating,) deleted", podOps)
	}
	if !podDeleted.GetChange().GetPod().GetTerminating() {
		t.Errorf("the pod's final state does not show it terminating: %s", line(podDeleted))
	}
	check("Deployment", shop, "web", []string{"CREATED", "UPDATED"})
	check("Node", "", "node-a", []string{"SNAPSHOT", "UPDATED"})

	cmUpd := eventsOf(all, "ConfigMap", shop, "app.properties")[1].GetChange()
	if !slices.Equal(cmUpd.GetChangedPaths(), []string{`data["log.level"]`}) {
		t.Errorf("config map changed paths %q", cmUpd.GetChangedPaths())
	}
	if len(cmUpd.GetPrevious()) == 0 || len(cmUpd.GetObject()) == 0 {
		t.Error("config map update lacks previous or new state")
	}
	var final corev1.ConfigMap
	cmDel := eventsOf(all, "ConfigMap", shop, "app.properties")[2].GetChange()
	if err := final.Unmarshal(cmDel.GetPrevious()); err != nil || final.Data["log.level"] != "debug" || len(cmDel.GetObject()) != 0 {
		t.Errorf("delete's previous state %v (err %v), want the final state with log.level=debug", final.Data, err)
	}
	if ps := podRunning.GetChange().GetPod(); ps.GetPhase() != "Running" || !ps.GetReady() || ps.GetRestarts() != 3 {
		t.Errorf("pod summary after status update: %v", ps)
	}
	if p := podRunning.GetChange().GetChangedPaths(); !slices.Contains(p, "status.phase") || !slices.Contains(p, "status.conditions") {
		t.Errorf("pod status update paths %q", p)
	}
	if p := podLabelled.GetChange().GetChangedPaths(); !slices.Equal(p, []string{"metadata.labels.tier"}) {
		t.Errorf("pod label patch paths %q", p)
	}
	if podDeleted.GetChange().GetFinalStateUnknown() {
		t.Error("a delete seen on the watch was marked final-state-unknown")
	}
	if ds := depScaled.GetChange().GetDeployment(); ds.GetDesiredReplicas() != 5 || !slices.Equal(ds.GetImages(), []string{"registry.example/web:2"}) {
		t.Errorf("deployment summary %v", ds)
	}
	if p := depScaled.GetChange().GetChangedPaths(); !slices.Contains(p, "spec.replicas") {
		t.Errorf("deployment scale paths %q", p)
	}
	if ns := nodeImages.GetChange().GetNode(); ns.GetImageCount() != 2 || ns.GetImageBytes() != 1000<<20 {
		t.Errorf("node summary after images update %v", ns)
	}
	if p := nodeImages.GetChange().GetChangedPaths(); !slices.Equal(p, []string{"status.images"}) {
		t.Errorf("node images paths %q", p)
	}
	seen := map[string]string{}
	for _, ev := range all {
		if prev, dup := seen[ev.GetId()]; dup {
			t.Errorf("id %s used by %q and %q", ev.GetId(), prev, line(ev))
		}
		seen[ev.GetId()] = line(ev)
	}
	t.Logf("event stream:\n%s", describe(all))
}

func TestResyncReplaysStateBetweenMarkers(t *testing.T) {
	ctx := context.Background()
	cs := client(t)
	nsReplay := createNamespace(t, cs, "replay")
	for _, name := range []string{"a", "b.c"} {
		must[*corev1.ConfigMap](t)(cs.CoreV1().ConfigMaps(nsReplay).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}))
	}
	s := startStream(t, app.Config{Kinds: []kinds.Kind{kinds.ConfigMaps}, Namespace: nsReplay, Resync: 500 * time.Millisecond})
	rec := s.rec
	isResyncEnd := func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END && ev.GetReplay().GetReason() == kubestreamv1.ReplayReason_REPLAY_REASON_RESYNC
	}
	rec.waitFor(t, "a resync round", isResyncEnd)
	// Delete one between rounds: the next round no longer lists it.
	must[struct{}](t)(struct{}{}, cs.CoreV1().ConfigMaps(nsReplay).Delete(ctx, "a", metav1.DeleteOptions{}))
	rec.waitFor(t, "delete of a", isOp(kubestreamv1.Operation_OPERATION_DELETED, "ConfigMap", nsReplay, "a", ""))
	deletedAt := len(rec.snapshot())
	rec.waitFor(t, "a round after the delete", func(ev *kubestreamv1.Event) bool {
		evs := rec.snapshot()
		return isResyncEnd(ev) && slices.Index(evs, ev) > deletedAt
	})

	evs := rec.snapshot()
	rounds := map[string][]string{}
	open := map[string]bool{}
	var order []string
	for _, ev := range evs {
		id := ev.GetReplayId()
		switch ev.GetOperation() {
		case kubestreamv1.Operation_OPERATION_REPLAY_BEGIN:
			open[id] = true
			order = append(order, id)
		case kubestreamv1.Operation_OPERATION_REPLAY_END:
			if !open[id] {
				t.Fatalf("end of round %s without its begin", id)
			}
			open[id] = false
			want := int64(len(rounds[id]))
			if got := ev.GetReplay().GetObjectCounts()["configmaps"]; got != want {
				t.Fatalf("round %s end counts %d, saw %d snapshots", id, got, want)
			}
		case kubestreamv1.Operation_OPERATION_SNAPSHOT:
			if !open[id] {
				t.Fatalf("snapshot %s outside its round %s", line(ev), id)
			}
			rounds[id] = append(rounds[id], ev.GetObject().GetName())
		}
	}
	if len(order) < 3 {
		t.Fatalf("%d rounds, want the initial one and at least two resyncs", len(order))
	}
	first, last := rounds[order[0]], rounds[order[len(order)-1]]
	slices.Sort(first)
	slices.Sort(last)
	if !slices.Equal(first, []string{"a", "b.c"}) || !slices.Equal(last, []string{"b.c"}) {
		t.Fatalf("first round %v, last round %v: want [a b.c] then [b.c]", first, last)
	}
	// Snapshots of one object in different rounds are distinct events.
	ids := map[string]bool{}
	for _, ev := range eventsOf(evs, "ConfigMap", nsReplay, "b.c") {
		if ids[ev.GetId()] {
			t.Fatalf("replayed snapshot reused id %s", ev.GetId())
		}
		ids[ev.GetId()] = true
	}
}

func TestNamespaceAndSelectorFilter(t *testing.T) {
	ctx := context.Background()
	cs := client(t)
	teamA := createNamespace(t, cs, "team-a")
	teamB := createNamespace(t, cs, "team-b")
	s := startStream(t, app.Config{Kinds: []kinds.Kind{kinds.ConfigMaps}, Namespace: teamA, Selector: "stream=yes"})
	rec := s.rec
	rec.waitFor(t, "initial round", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END
	})
	mk := func(ns, name, label string) {
		must[*corev1.ConfigMap](t)(cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"stream": label}}}, metav1.CreateOptions{}))
	}
	mk(teamB, "other-ns", "yes")
	mk(teamA, "unlabelled", "no")
	mk(teamA, "wanted", "yes")
	rec.waitFor(t, "the selected object", isOp(kubestreamv1.Operation_OPERATION_CREATED, "ConfigMap", teamA, "wanted", ""))
	for _, ev := range rec.snapshot() {
		if o := ev.GetObject(); o != nil && o.GetName() != "wanted" {
			t.Fatalf("filtered object streamed: %s", line(ev))
		}
	}
}

func TestShutdownDrainsAndClosesTheSink(t *testing.T) {
	cs := client(t)
	nsDrain := createNamespace(t, cs, "drain")
	s := startStream(t, app.Config{Kinds: []kinds.Kind{kinds.ConfigMaps}, Namespace: nsDrain})
	s.rec.waitFor(t, "initial round", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END
	})
	s.cancel()
	if err := <-s.done; err != nil {
		t.Fatalf("run returned %v on a clean shutdown", err)
	}
	s.done <- nil
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	if !s.rec.closed {
		t.Fatal("sink not closed on shutdown")
	}
}

func TestImageStorageEventsFlowFromNodes(t *testing.T) {
	ctx := context.Background()
	cs := client(t)
	opts := imagestorage.DefaultOptions()
	opts.WarningBytes = 1 << 30
	s := startStream(t, app.Config{Kinds: []kinds.Kind{kinds.Nodes}, Derivers: []source.Deriver{imagestorage.NewTracker(opts)}})
	rec := s.rec
	rec.waitFor(t, "initial round", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END
	})
	node := must[*corev1.Node](t)(cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-images"},
		Status: corev1.NodeStatus{
			Capacity: corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("100Gi")},
			Images:   []corev1.ContainerImage{{Names: []string{"registry.example/a:1"}, SizeBytes: 600 << 20}},
		},
	}, metav1.CreateOptions{}))
	t.Cleanup(func() { _ = cs.CoreV1().Nodes().Delete(ctx, "node-images", metav1.DeleteOptions{}) })
	isImageEvent := func(op kubestreamv1.Operation, rv string) func(*kubestreamv1.Event) bool {
		return func(ev *kubestreamv1.Event) bool {
			return ev.GetImageStorage() != nil && ev.GetOperation() == op && ev.GetObject().GetName() == "node-images" && ev.GetObject().GetResourceVersion() == rv
		}
	}
	created := rec.waitFor(t, "image storage of the new node", isImageEvent(kubestreamv1.Operation_OPERATION_CREATED, node.ResourceVersion)).GetImageStorage()
	if created.GetTotalBytes() != 600<<20 || created.GetSeverity() != kubestreamv1.Severity_SEVERITY_OK {
		t.Fatalf("on create: %v", created)
	}
	node.Status.Images = append(node.Status.Images, corev1.ContainerImage{Names: []string{"registry.example/b:1"}, SizeBytes: 600 << 20})
	node = must[*corev1.Node](t)(cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}))
	grown := rec.waitFor(t, "image storage growth", isImageEvent(kubestreamv1.Operation_OPERATION_UPDATED, node.ResourceVersion)).GetImageStorage()
	if grown.GetDeltaBytes() != 600<<20 || len(grown.GetAdded()) != 1 || grown.GetSeverity() != kubestreamv1.Severity_SEVERITY_WARNING ||
		grown.GetTransition() != kubestreamv1.AlertTransition_ALERT_TRANSITION_FIRING {
		t.Fatalf("after growth past the warning threshold: %v", grown)
	}
	// A label change is a node event but not an image-storage event.
	node = must[*corev1.Node](t)(cs.CoreV1().Nodes().Patch(ctx, "node-images", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{}))
	rec.waitFor(t, "the label change", isOp(kubestreamv1.Operation_OPERATION_UPDATED, "Node", "", "node-images", node.ResourceVersion))
	must[struct{}](t)(struct{}{}, cs.CoreV1().Nodes().Delete(ctx, "node-images", metav1.DeleteOptions{}))
	final := rec.waitFor(t, "the node's last image-storage event", func(ev *kubestreamv1.Event) bool {
		return ev.GetImageStorage() != nil && ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED && ev.GetObject().GetName() == "node-images"
	}).GetImageStorage()
	if !final.GetNodeDeleted() || final.GetTransition() != kubestreamv1.AlertTransition_ALERT_TRANSITION_RESOLVED {
		t.Fatalf("on delete: %v", final)
	}
	var imageEvents int
	for _, ev := range rec.snapshot() {
		if ev.GetImageStorage() != nil && ev.GetObject().GetName() == "node-images" {
			imageEvents++
		}
	}
	if imageEvents != 3 {
		t.Fatalf("%d image-storage events, want 3 (create, growth, delete): the label change must not emit one", imageEvents)
	}
}

// More objects than one list page (500): the initial round must hold every
// one of them, however the informer lists (paged list or watch-list).
func TestInitialRoundOfManyObjects(t *testing.T) {
	ctx := context.Background()
	cs := client(t)
	ns := createNamespace(t, cs, "many")
	const n = 650
	for i := 0; i < n; i++ {
		must[*corev1.ConfigMap](t)(cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%03d.conf", i)},
			Data:       map[string]string{"i": fmt.Sprint(i)},
		}, metav1.CreateOptions{}))
	}
	s := startStream(t, app.Config{Kinds: []kinds.Kind{kinds.ConfigMaps}, Namespace: ns})
	end := s.rec.waitFor(t, "the initial round", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END
	})
	if got := end.GetReplay().GetObjectCounts()["configmaps"]; got != n {
		t.Fatalf("initial round counted %d config maps, want %d", got, n)
	}
	seen := map[string]bool{}
	for _, ev := range s.rec.snapshot() {
		if ev.GetOperation() == kubestreamv1.Operation_OPERATION_SNAPSHOT {
			var cm corev1.ConfigMap
			if err := cm.Unmarshal(ev.GetChange().GetObject()); err != nil || cm.Name != ev.GetObject().GetName() || len(cm.ManagedFields) != 0 {
				t.Fatalf("snapshot %s: state %q, err %v, %d managed fields", ev.GetObject().GetName(), cm.Name, err, len(cm.ManagedFields))
			}
			seen[cm.Name] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct snapshots, want %d", len(seen), n)
	}
}
