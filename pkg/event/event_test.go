package event_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubestream/kubestream/internal/testobj"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
)

func TestChangedPaths(t *testing.T) {
	base := testobj.Pod("ns", "p", "u", "1", "nginx:1")
	base.Annotations = map[string]string{"note": "x"}
	mod := func(f func(p *corev1.Pod)) *corev1.Pod {
		p := base.DeepCopy()
		p.ResourceVersion = "2"
		f(p)
		return p
	}
	tests := []struct {
		name string
		next *corev1.Pod
		want []string
	}{
		{"only the resourceVersion", mod(func(*corev1.Pod) {}), nil},
		{"container image", mod(func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:2" }), []string{"spec.containers[0].image"}},
		{"dotted label key is quoted", mod(func(p *corev1.Pod) { p.Labels["app.kubernetes.io/name"] = "web" }), []string{`metadata.labels["app.kubernetes.io/name"]`}},
		{"plain label key", mod(func(p *corev1.Pod) { p.Labels["app"] = "other" }), []string{"metadata.labels.app"}},
		{"annotation removed", mod(func(p *corev1.Pod) { delete(p.Annotations, "note") }), []string{"metadata.annotations.note"}},
		{"status phase and new condition list", mod(func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}), []string{"status.phase", "status.conditions"}},
		{"deletion timestamp", mod(func(p *corev1.Pod) { now := metav1.NewTime(time.Unix(100, 0)); p.DeletionTimestamp = &now }), []string{"metadata.deletionTimestamp"}},
		{"new resource request", mod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}
		}), []string{"spec.containers[0].resources.requests.memory"}},
		{"managed fields are ignored", mod(func(p *corev1.Pod) { p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}} }), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := event.ChangedPaths(base, tt.next)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("paths = %q, want %q", got, tt.want)
			}
		})
	}
}

// IntOrString is one JSON value: a change is reported at the field's JSON
// path, never at Go names like maxSurge.StrVal.
func TestChangedPathsOfIntOrStringUseTheJSONPath(t *testing.T) {
	mk := func(surge intstr.IntOrString) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web", ResourceVersion: "1"},
			Spec: appsv1.DeploymentSpec{Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge},
			}},
		}
	}
	for _, tt := range []struct{ from, to intstr.IntOrString }{
		{intstr.FromString("25%"), intstr.FromString("50%")},
		{intstr.FromInt32(1), intstr.FromString("50%")},
		{intstr.FromInt32(1), intstr.FromInt32(2)},
	} {
		got := event.ChangedPaths(mk(tt.from), mk(tt.to))
		if want := []string{"spec.strategy.rollingUpdate.maxSurge"}; !slices.Equal(got, want) {
			t.Errorf("%s -> %s: paths = %q, want %q", tt.from.String(), tt.to.String(), got, want)
		}
	}
	if got := event.ChangedPaths(mk(intstr.FromString("25%")), mk(intstr.FromString("25%"))); got != nil {
		t.Errorf("equal values: paths = %q, want none", got)
	}
}

func TestChangedPathsComparesQuantitiesByValue(t *testing.T) {
	a := testobj.Pod("ns", "p", "u", "1", "i")
	a.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}
	b := a.DeepCopy()
	b.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1024Mi")}
	if got := event.ChangedPaths(a, b); len(got) != 0 {
		t.Fatalf("1Gi vs 1024Mi reported as %q", got)
	}
}

func TestChangedPathsCapsTheList(t *testing.T) {
	a := testobj.ConfigMap("ns", "big", "u", "1", map[string]string{})
	b := testobj.ConfigMap("ns", "big", "u", "2", map[string]string{})
	for i := 0; i < 500; i++ {
		b.Data[strings.Repeat("k", 1+i%7)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	if got := event.ChangedPaths(a, b); len(got) != event.MaxChangedPaths {
		t.Fatalf("%d paths, want the cap %d", len(got), event.MaxChangedPaths)
	}
}

func TestIDsAreDeterministicAndDistinct(t *testing.T) {
	tr := &event.Translator{Cluster: "c", Instance: "i"}
	obj := testobj.ConfigMap("ns", "kube-root-ca.crt", "u1", "7", map[string]string{"ca.crt": "x"})
	created := &change.Change{Kind: kinds.ConfigMaps, Op: change.Created, Object: obj, ObservedAt: time.Unix(1, 0)}
	again := &change.Change{Kind: kinds.ConfigMaps, Op: change.Created, Object: obj, ObservedAt: time.Unix(99, 0)}
	snapR1 := &change.Change{Kind: kinds.ConfigMaps, Op: change.Snapshot, Object: obj, ReplayID: "r1"}
	snapR2 := &change.Change{Kind: kinds.ConfigMaps, Op: change.Snapshot, Object: obj, ReplayID: "r2"}
	ids := map[string]string{}
	for name, c := range map[string]*change.Change{"created": created, "again": again, "snapR1": snapR1, "snapR2": snapR2} {
		ev, err := tr.Translate(c)
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = ev.GetId()
	}
	if ids["created"] != ids["again"] {
		t.Fatal("the same change observed twice got two ids")
	}
	if ids["created"] == ids["snapR1"] || ids["snapR1"] == ids["snapR2"] {
		t.Fatalf("ids collide: %v", ids)
	}
}

func TestTranslateUpdate(t *testing.T) {
	prev := testobj.Pod("shop", "web-1", "u1", "10", "web:1")
	next := prev.DeepCopy()
	next.ResourceVersion = "11"
	next.Spec.NodeName = "node-a"
	next.Status.Phase = corev1.PodRunning
	next.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", RestartCount: 2}}
	ctrl := true
	next.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-abc", UID: "rs1", Controller: &ctrl}}
	tr := &event.Translator{Cluster: "prod", Instance: "ks-0"}
	ev, err := tr.Translate(&change.Change{Kind: kinds.Pods, Op: change.Updated, Object: next, Previous: prev, ObservedAt: time.Unix(5, 0)})
	if err != nil {
		t.Fatal(err)
	}
	ref := ev.GetObject()
	if ev.GetOperation() != kubestreamv1.Operation_OPERATION_UPDATED || ev.GetCluster() != "prod" || ev.GetInstance() != "ks-0" || ev.GetSchemaVersion() != 1 {
		t.Fatalf("envelope: %v", ev)
	}
	if ref.GetKind() != "Pod" || ref.GetVersion() != "v1" || ref.GetNamespace() != "shop" || ref.GetName() != "web-1" || ref.GetResourceVersion() != "11" || ref.GetLabels()["app"] != "web-1" {
		t.Fatalf("object ref: %v", ref)
	}
	if len(ref.GetOwnerReferences()) != 1 || !ref.GetOwnerReferences()[0].GetController() {
		t.Fatalf("owner references: %v", ref.GetOwnerReferences())
	}
	oc := ev.GetChange()
	if oc.GetContentType() != kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF || oc.GetTypeName() != "k8s.io.api.core.v1.Pod" {
		t.Fatalf("content type %v %q", oc.GetContentType(), oc.GetTypeName())
	}
	var decoded, decodedPrev corev1.Pod
	if err := decoded.Unmarshal(oc.GetObject()); err != nil || decoded.Spec.NodeName != "node-a" {
		t.Fatalf("object bytes do not decode as the new pod: %v %v", err, decoded.Spec.NodeName)
	}
	if err := decodedPrev.Unmarshal(oc.GetPrevious()); err != nil || decodedPrev.ResourceVersion != "10" {
		t.Fatalf("previous bytes do not decode as the old pod: %v", err)
	}
	wantPaths := []string{"metadata.ownerReferences", "spec.nodeName", "status.phase", "status.containerStatuses"}
	if !slices.Equal(oc.GetChangedPaths(), wantPaths) {
		t.Fatalf("changed paths %q, want %q", oc.GetChangedPaths(), wantPaths)
	}
	ps := oc.GetPod()
	if ps.GetPhase() != "Running" || ps.GetNodeName() != "node-a" || ps.GetRestarts() != 2 || !slices.Equal(ps.GetImages(), []string{"web:1"}) {
		t.Fatalf("pod summary %v", ps)
	}
}

func TestTranslateDeleteCarriesFinalStateAsPrevious(t *testing.T) {
	final := testobj.ConfigMap("ns", "app.properties", "u1", "42", map[string]string{"a": "1"})
	tr := &event.Translator{ContentType: kubestreamv1.ContentType_CONTENT_TYPE_JSON}
	ev, err := tr.Translate(&change.Change{Kind: kinds.ConfigMaps, Op: change.Deleted, Previous: final, FinalStateUnknown: true})
	if err != nil {
		t.Fatal(err)
	}
	oc := ev.GetChange()
	if len(oc.GetObject()) != 0 || !oc.GetFinalStateUnknown() {
		t.Fatalf("delete: object %q, finalStateUnknown %v", oc.GetObject(), oc.GetFinalStateUnknown())
	}
	var m map[string]any
	if err := json.Unmarshal(oc.GetPrevious(), &m); err != nil {
		t.Fatal(err)
	}
	if m["kind"] != "ConfigMap" || m["apiVersion"] != "v1" {
		t.Fatalf("JSON state lacks apiVersion/kind: %v", m)
	}
	if final.Kind != "" {
		t.Fatal("translation wrote TypeMeta into the cached object")
	}
	if cs := oc.GetConfigMap(); !slices.Equal(cs.GetKeys(), []string{"a"}) || cs.GetValueSizes()["a"] != 1 || len(cs.GetDataHash()) != 64 {
		t.Fatalf("config map summary %v", cs)
	}
}

func TestSummaries(t *testing.T) {
	node := &corev1.Node{
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			Capacity:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceEphemeralStorage: resource.MustParse("100Gi")},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Images:     []corev1.ContainerImage{{Names: []string{"a"}, SizeBytes: 100}, {Names: []string{"b"}, SizeBytes: 23}},
		},
	}
	ns := kinds.NodeSummary(node)
	if !ns.GetReady() || ns.GetImageCount() != 2 || ns.GetImageBytes() != 123 || ns.GetCapacity()["cpu"] != "8" || ns.GetTaints()[0].GetEffect() != "NoSchedule" {
		t.Fatalf("node summary %v", ns)
	}
	replicas := int32(3)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Generation: 4},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Image: "init:1"}}, Containers: []corev1.Container{{Image: "app:2"}},
		}}},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 3, ReadyReplicas: 2, UpdatedReplicas: 1, AvailableReplicas: 2},
	}
	ds := kinds.DeploymentSummary(d)
	if ds.GetDesiredReplicas() != 3 || ds.GetReadyReplicas() != 2 || ds.GetGeneration() != 4 || ds.GetObservedGeneration() != 3 || !slices.Equal(ds.GetImages(), []string{"init:1", "app:2"}) {
		t.Fatalf("deployment summary %v", ds)
	}
	d.Spec.Replicas = nil
	if kinds.DeploymentSummary(d).GetDesiredReplicas() != 1 {
		t.Fatal("unset replicas should read as the apiserver default 1")
	}
}

func TestTrimDropsStatesButKeepsIdentity(t *testing.T) {
	big := testobj.ConfigMap("ns", "big", "u1", "2", map[string]string{"blob": strings.Repeat("x", 200_000)})
	prev := testobj.ConfigMap("ns", "big", "u1", "1", map[string]string{"blob": strings.Repeat("y", 200_000)})
	ev, err := (&event.Translator{}).Translate(&change.Change{Kind: kinds.ConfigMaps, Op: change.Updated, Object: big, Previous: prev})
	if err != nil {
		t.Fatal(err)
	}
	if got := event.Trim(ev, 1<<20); got != ev {
		t.Fatal("an event under the limit was changed")
	}
	trimmed := event.Trim(ev, 300_000)
	if trimmed == nil || !trimmed.GetChange().GetTruncated() || trimmed.GetChange().GetPrevious() != nil || len(trimmed.GetChange().GetObject()) == 0 {
		t.Fatalf("want previous dropped, object kept, truncated set: %v", trimmed.GetChange().GetTruncated())
	}
	if proto.Size(trimmed) > 300_000 || ev.GetChange().GetTruncated() {
		t.Fatal("trim exceeded the limit or modified the original")
	}
	tiny := event.Trim(ev, 1000)
	if tiny == nil || tiny.GetChange().GetObject() != nil || tiny.GetObject().GetName() != "big" || tiny.GetChange().GetConfigMap() == nil {
		t.Fatalf("at 1000 bytes want identity and summary only, got %v", tiny)
	}
	if event.Trim(ev, 10) != nil {
		t.Fatal("an event that cannot fit should give nil")
	}
}
