package event_test

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubestream/kubestream/internal/testobj"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/redact"
)

// The wire differ must give exactly ChangedPaths of the decoded objects:
// random mutations of realistic objects, every pair checked both ways.
func TestChangedPathsWireMatchesChangedPaths(t *testing.T) {
	cases := []struct {
		name    string
		base    func() runtime.Object
		mutates []func(*rand.Rand, runtime.Object)
	}{
		{"pod", func() runtime.Object { return realisticPod() }, podMutations},
		{"deployment", func() runtime.Object { return realisticDeployment() }, deploymentMutations},
		{"configmap", func() runtime.Object { return realisticConfigMap() }, configMapMutations},
		{"node", func() runtime.Object { return realisticNode() }, nodeMutations},
	}
	for _, k := range cases {
		t.Run(k.name, func(t *testing.T) {
			r := rand.New(rand.NewSource(int64(len(k.name))))
			base := k.base()
			cases, withPaths := 0, 0
			for chain := 0; chain < 40; chain++ {
				prev := base
				for step := 0; step < 10; step++ {
					next := prev.DeepCopyObject()
					for n := 1 + r.Intn(3); n > 0; n-- {
						k.mutates[r.Intn(len(k.mutates))](r, next)
					}
					for _, pair := range [][2]runtime.Object{{prev, next}, {next, prev}, {base, next}} {
						if len(assertWireMatches(t, pair[0], pair[1])) > 0 {
							withPaths++
						}
						cases++
					}
					prev = next
				}
			}
			if withPaths < cases/2 {
				t.Fatalf("only %d of %d cases had changed paths: the mutations do too little", withPaths, cases)
			}
		})
	}
}

// assertWireMatches checks the wire differ against ChangedPaths on the
// objects as Translate decodes them, and returns the paths.
func assertWireMatches(t *testing.T, prev, next runtime.Object) []string {
	t.Helper()
	pc, nc := compact(t, prev), compact(t, next)
	want := event.ChangedPaths(full(t, pc), full(t, nc))
	got, ok := event.ChangedPathsWire(pc, nc)
	if !ok {
		t.Fatalf("wire differ declined %T", prev)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%T: wire paths\n  %q\nwant\n  %q", prev, got, want)
	}
	return got
}

func compact(t *testing.T, obj runtime.Object) *change.Compact {
	t.Helper()
	c, err := change.Compacted(obj)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*change.Compact)
}

func full(t *testing.T, c *change.Compact) change.Object {
	t.Helper()
	o, err := change.Full(c)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestChangedPathsWireExamples(t *testing.T) {
	base := realisticPod()
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
		{"annotation with a dotted key", mod(func(p *corev1.Pod) { p.Annotations["kubectl.kubernetes.io/restartedAt"] = "now" }),
			[]string{`metadata.annotations["kubectl.kubernetes.io/restartedAt"]`}},
		{"1Gi is 1073741824, written in another format", mod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("1073741824")
		}), nil},
		{"1Gi is not 1G", mod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("1G")
		}),
			[]string{"spec.containers[0].resources.limits.memory"}},
		{"inlined volume source", mod(func(p *corev1.Pod) { p.Spec.Volumes[0].ConfigMap.Name = "other" }),
			[]string{"spec.volumes[0].configMap.name"}},
		{"probe port as a name", mod(func(p *corev1.Pod) { p.Spec.Containers[0].ReadinessProbe.HTTPGet.Port = intstr.FromString("http") }),
			[]string{"spec.containers[0].readinessProbe.httpGet.port"}},
		{"new container list and a condition time", mod(func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar"})
			p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(time.Unix(2000, 0))
		}), []string{"spec.containers", "status.conditions[0].lastTransitionTime"}},
		{"pointer set to zero", mod(func(p *corev1.Pod) { zero := int64(0); p.Spec.ActiveDeadlineSeconds = &zero }),
			[]string{"spec.activeDeadlineSeconds"}},
		{"managed fields", mod(func(p *corev1.Pod) { p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}} }), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := event.ChangedPathsWire(compact(t, base), compact(t, tt.next))
			if !ok || !slices.Equal(got, tt.want) {
				t.Fatalf("paths = %q (ok %v), want %q", got, ok, tt.want)
			}
			assertWireMatches(t, base, tt.next)
		})
	}
}

func TestChangedPathsWireCapsTheList(t *testing.T) {
	a := testobj.ConfigMap("ns", "big", "u", "1", map[string]string{})
	b := testobj.ConfigMap("ns", "big", "u", "2", map[string]string{})
	for i := 0; i < 500; i++ {
		b.Data[fmt.Sprintf("k%03d.properties", i)] = "v"
	}
	if got := assertWireMatches(t, a, b); len(got) != event.MaxChangedPaths {
		t.Fatalf("%d paths, want the cap %d", len(got), event.MaxChangedPaths)
	}
}

// Encodings Kubernetes does not write (fields out of order, unknown
// fields, repeated singular fields) decode all the same; the wire differ
// must still agree.
func TestChangedPathsWireOnUnusualEncodings(t *testing.T) {
	prev := realisticPod()
	next := prev.DeepCopy()
	next.Labels["tier"] = "db"
	next.Spec.NodeName = "node-b"
	pc, nc := compact(t, prev), compact(t, next)
	want := event.ChangedPaths(full(t, pc), full(t, nc))
	for name, rewrite := range map[string]func([]byte) []byte{
		"reversed fields": func(b []byte) []byte { return reverseFields(t, b) },
		"unknown field": func(b []byte) []byte {
			return protowire.AppendString(protowire.AppendTag(b, 99, protowire.BytesType), "x")
		},
		"metadata twice": func(b []byte) []byte { return append(b, b...) },
	} {
		t.Run(name, func(t *testing.T) {
			odd, err := change.ProtoCodec("Pod", func() runtime.Object { return &corev1.Pod{} }).FromProto(rewrite(slices.Clone(nc.Bytes())))
			if err != nil {
				t.Fatal(err)
			}
			want := want
			if name == "metadata twice" { // messages merge, lists append
				want = event.ChangedPaths(full(t, pc), full(t, odd))
			}
			got, ok := event.ChangedPathsWire(pc, odd)
			if !ok || !slices.Equal(got, want) {
				t.Fatalf("paths = %q (ok %v), want %q", got, ok, want)
			}
		})
	}
}

func reverseFields(t *testing.T, b []byte) []byte {
	var fields [][]byte
	for len(b) > 0 {
		_, _, n := protowire.ConsumeField(b)
		if n < 0 {
			t.Fatal(protowire.ParseError(n))
		}
		fields, b = append(fields, b[:n]), b[n:]
	}
	var out []byte
	for i := len(fields) - 1; i >= 0; i-- {
		out = append(out, fields[i]...)
	}
	return out
}

// Objects: what a cluster would hold, with the fields mutated below set.

func realisticPod() *corev1.Pod {
	grace := int64(30)
	p := testobj.Pod("shop", "web-7d4b9c-x2x9z", "3f1e", "1001", "registry.example.com/web:1.4.2")
	p.Labels = map[string]string{"app": "web", "app.kubernetes.io/name": "web", "pod-template-hash": "7d4b9c"}
	p.Annotations = map[string]string{"prometheus.io/scrape": "true", "note": "x"}
	p.CreationTimestamp = metav1.NewTime(time.Unix(1_700_000_000, 0))
	ctrl := true
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d4b9c", UID: "rs1", Controller: &ctrl}}
	p.Spec = corev1.PodSpec{
		NodeName:                      "node-a",
		TerminationGracePeriodSeconds: &grace,
		NodeSelector:                  map[string]string{"kubernetes.io/os": "linux"},
		Volumes: []corev1.Volume{
			{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}},
			{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
		Containers: []corev1.Container{{
			Name:  "web",
			Image: "registry.example.com/web:1.4.2",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			Env:   []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1000m"), corev1.ResourceMemory: resource.MustParse("512Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
			},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 10},
		}},
		Tolerations: []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}},
	}
	start := metav1.NewTime(time.Unix(1_700_000_010, 0))
	p.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    "10.0.0.5",
		PodIP:     "10.1.2.3",
		PodIPs:    []corev1.PodIP{{IP: "10.1.2.3"}},
		StartTime: &start,
		QOSClass:  corev1.PodQOSBurstable,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: start},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: start},
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "web", Ready: true, Image: "registry.example.com/web:1.4.2", ImageID: "sha256:abc",
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: start}},
		}},
	}
	return p
}

func realisticDeployment() *appsv1.Deployment {
	replicas, history := int32(3), int32(10)
	surge := intstr.FromString("25%")
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "d1", ResourceVersion: "5", Generation: 4,
			Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"deployment.kubernetes.io/revision": "3"}},
		Spec: appsv1.DeploymentSpec{
			Replicas:             &replicas,
			RevisionHistoryLimit: &history,
			Selector:             &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Strategy:             appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       realisticPod().Spec,
			},
		},
		Status: appsv1.DeploymentStatus{
			ObservedGeneration: 4, Replicas: 3, ReadyReplicas: 3, UpdatedReplicas: 3, AvailableReplicas: 3,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue,
				LastUpdateTime: metav1.NewTime(time.Unix(1_700_000_000, 0)), LastTransitionTime: metav1.NewTime(time.Unix(1_700_000_000, 0))}},
		},
	}
}

func realisticConfigMap() *corev1.ConfigMap {
	cm := testobj.ConfigMap("shop", "web-config", "c1", "77", map[string]string{
		"app.properties": "a=1\nb=2", "log.level": "info", "plain": "x",
	})
	cm.BinaryData = map[string][]byte{"logo.png": {0x89, 'P', 'N', 'G'}}
	return cm
}

func realisticNode() *corev1.Node {
	hb := metav1.NewTime(time.Unix(1_700_000_000, 0))
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a", UID: "n1", ResourceVersion: "900",
			Labels: map[string]string{"kubernetes.io/hostname": "node-a", "node-role.kubernetes.io/worker": ""}},
		Spec: corev1.NodeSpec{PodCIDR: "10.1.0.0/24", PodCIDRs: []string{"10.1.0.0/24"}, ProviderID: "aws:///i-1"},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3900m"), corev1.ResourceMemory: resource.MustParse("15Gi"), corev1.ResourcePods: resource.MustParse("110")},
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: hb, LastTransitionTime: hb, Reason: "KubeletReady"},
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: hb, LastTransitionTime: hb},
			},
			Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.5"}},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
			NodeInfo:        corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", OSImage: "Linux", Architecture: "amd64"},
			Images: []corev1.ContainerImage{
				{Names: []string{"registry.example.com/web@sha256:1", "registry.example.com/web:1.4.2"}, SizeBytes: 123_456_789},
				{Names: []string{"registry.k8s.io/pause:3.10"}, SizeBytes: 320_000},
			},
		},
	}
}

// Mutations.

var (
	mapKeys    = []string{"app", "tier", "app.kubernetes.io/name", "a-b_c", "", "x y", "note", "team.example.com/owner"}
	mapValues  = []string{"", "web", "db", "true", "x"}
	quantities = []string{"1", "1000m", "500m", "0", "1Gi", "1024Mi", "1073741824", "1G", "512Mi", "536870912", "110", "3900m", "4"}
	times      = []int64{0, 1_700_000_000, 1_700_000_010, 1_700_000_500}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.Intn(len(s))] }

func mutateStringMap(r *rand.Rand, m *map[string]string) {
	switch r.Intn(4) {
	case 0, 1:
		if *m == nil {
			*m = map[string]string{}
		}
		(*m)[pick(r, mapKeys)] = pick(r, mapValues)
	case 2:
		delete(*m, pick(r, mapKeys))
		for k := range *m { // and one present key
			delete(*m, k)
			break
		}
	case 3:
		if r.Intn(2) == 0 {
			*m = nil
		} else {
			*m = map[string]string{}
		}
	}
}

func mutateResources(r *rand.Rand, l *corev1.ResourceList) {
	names := []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods, "example.com/gpu"}
	switch r.Intn(4) {
	case 0, 1:
		if *l == nil {
			*l = corev1.ResourceList{}
		}
		(*l)[pick(r, names)] = resource.MustParse(pick(r, quantities))
	case 2:
		delete(*l, pick(r, names))
	case 3:
		*l = nil
	}
}

func randTime(r *rand.Rand) metav1.Time {
	if tm := pick(r, times); tm != 0 {
		return metav1.NewTime(time.Unix(tm, 0))
	}
	return metav1.Time{}
}

func randTimePtr(r *rand.Rand) *metav1.Time {
	if r.Intn(3) == 0 {
		return nil
	}
	tm := randTime(r)
	return &tm
}

func randInt64Ptr(r *rand.Rand) *int64 {
	if r.Intn(3) == 0 {
		return nil
	}
	v := int64(r.Intn(3)) * 30
	return &v
}

func meta(o runtime.Object) *metav1.ObjectMeta {
	switch o := o.(type) {
	case *corev1.Pod:
		return &o.ObjectMeta
	case *appsv1.Deployment:
		return &o.ObjectMeta
	case *corev1.ConfigMap:
		return &o.ObjectMeta
	case *corev1.Node:
		return &o.ObjectMeta
	}
	panic(fmt.Sprintf("no metadata for %T", o))
}

var metaMutations = []func(*rand.Rand, runtime.Object){
	func(r *rand.Rand, o runtime.Object) { mutateStringMap(r, &meta(o).Labels) },
	func(r *rand.Rand, o runtime.Object) { mutateStringMap(r, &meta(o).Annotations) },
	func(r *rand.Rand, o runtime.Object) { meta(o).ResourceVersion = fmt.Sprint(r.Intn(1e6)) },
	func(r *rand.Rand, o runtime.Object) {
		meta(o).ManagedFields = []metav1.ManagedFieldsEntry{{Manager: pick(r, mapValues), Operation: metav1.ManagedFieldsOperationApply}}
	},
	func(r *rand.Rand, o runtime.Object) { meta(o).DeletionTimestamp = randTimePtr(r) },
	func(r *rand.Rand, o runtime.Object) { meta(o).CreationTimestamp = randTime(r) },
	func(r *rand.Rand, o runtime.Object) { meta(o).Generation = int64(r.Intn(3)) },
	func(r *rand.Rand, o runtime.Object) {
		m := meta(o)
		if r.Intn(2) == 0 {
			m.Finalizers = append(m.Finalizers, pick(r, mapKeys))
		} else if len(m.Finalizers) > 0 {
			m.Finalizers = m.Finalizers[1:]
		}
	},
	func(r *rand.Rand, o runtime.Object) {
		m := meta(o)
		switch r.Intn(3) {
		case 0:
			m.OwnerReferences = append(m.OwnerReferences, metav1.OwnerReference{Kind: "ReplicaSet", Name: pick(r, mapValues), UID: "x"})
		case 1:
			m.OwnerReferences = nil
		default:
			if len(m.OwnerReferences) > 0 {
				c := r.Intn(2) == 0
				m.OwnerReferences[0].Controller = &c
			}
		}
	},
}

func podSpecMutations(spec func(runtime.Object) *corev1.PodSpec) []func(*rand.Rand, runtime.Object) {
	container := func(r *rand.Rand, o runtime.Object) *corev1.Container {
		s := spec(o)
		if len(s.Containers) == 0 {
			s.Containers = []corev1.Container{{Name: "main"}}
		}
		return &s.Containers[r.Intn(len(s.Containers))]
	}
	return []func(*rand.Rand, runtime.Object){
		func(r *rand.Rand, o runtime.Object) {
			container(r, o).Image = pick(r, []string{"web:1", "web:2", "registry.example.com/web:1.4.2"})
		},
		func(r *rand.Rand, o runtime.Object) {
			s := spec(o)
			if r.Intn(2) == 0 {
				s.Containers = append(s.Containers, corev1.Container{Name: "sidecar", Image: "envoy:1"})
			} else if len(s.Containers) > 0 {
				s.Containers = s.Containers[:len(s.Containers)-1]
			}
		},
		func(r *rand.Rand, o runtime.Object) {
			c := container(r, o)
			switch r.Intn(4) {
			case 0:
				c.Env = append(c.Env, corev1.EnvVar{Name: pick(r, mapKeys), Value: pick(r, mapValues)})
			case 1:
				if len(c.Env) > 0 {
					c.Env[r.Intn(len(c.Env))].Value = pick(r, mapValues)
				}
			case 2:
				if len(c.Env) > 0 {
					c.Env = c.Env[1:]
				}
			case 3:
				if len(c.Env) > 0 {
					e := &c.Env[r.Intn(len(c.Env))]
					if e.ValueFrom == nil {
						e.ValueFrom = &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}}
					} else {
						e.ValueFrom = nil
					}
				}
			}
		},
		func(r *rand.Rand, o runtime.Object) {
			c := container(r, o)
			if r.Intn(2) == 0 || len(c.Ports) == 0 {
				c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: int32(r.Intn(3)) * 8080, Protocol: corev1.ProtocolTCP})
			} else {
				c.Ports[0].ContainerPort = int32(r.Intn(3)) * 8080
			}
		},
		func(r *rand.Rand, o runtime.Object) { mutateResources(r, &container(r, o).Resources.Requests) },
		func(r *rand.Rand, o runtime.Object) { mutateResources(r, &container(r, o).Resources.Limits) },
		func(r *rand.Rand, o runtime.Object) {
			c := container(r, o)
			switch r.Intn(3) {
			case 0:
				c.ReadinessProbe = nil
			case 1:
				c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(int32(r.Intn(2)) * 8080)}}}
			case 2:
				c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString(pick(r, mapValues))}}}
			}
		},
		func(r *rand.Rand, o runtime.Object) { spec(o).TerminationGracePeriodSeconds = randInt64Ptr(r) },
		func(r *rand.Rand, o runtime.Object) { spec(o).ActiveDeadlineSeconds = randInt64Ptr(r) },
		func(r *rand.Rand, o runtime.Object) { spec(o).NodeName = pick(r, []string{"", "node-a", "node-b"}) },
		func(r *rand.Rand, o runtime.Object) { mutateStringMap(r, &spec(o).NodeSelector) },
		func(r *rand.Rand, o runtime.Object) {
			s := spec(o)
			if r.Intn(2) == 0 {
				s.Tolerations = append(s.Tolerations, corev1.Toleration{Key: pick(r, mapKeys), TolerationSeconds: randInt64Ptr(r)})
			} else if len(s.Tolerations) > 0 {
				s.Tolerations[0].TolerationSeconds = randInt64Ptr(r)
			}
		},
		func(r *rand.Rand, o runtime.Object) {
			s := spec(o)
			if len(s.Volumes) == 0 {
				s.Volumes = []corev1.Volume{{Name: "v"}}
			}
			v := &s.Volumes[r.Intn(len(s.Volumes))]
			switch r.Intn(3) {
			case 0:
				v.VolumeSource = corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: pick(r, mapValues)}}}
			case 1:
				q := resource.MustParse(pick(r, quantities))
				v.VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &q}}
			case 2:
				v.VolumeSource = corev1.VolumeSource{}
			}
		},
		func(r *rand.Rand, o runtime.Object) {
			s := spec(o)
			if s.SecurityContext == nil || r.Intn(3) == 0 {
				s.SecurityContext = &corev1.PodSecurityContext{}
			}
			s.SecurityContext.RunAsUser = randInt64Ptr(r)
			b := r.Intn(2) == 0
			s.SecurityContext.RunAsNonRoot = &b
		},
	}
}

var podMutations = slices.Concat(metaMutations, podSpecMutations(func(o runtime.Object) *corev1.PodSpec { return &o.(*corev1.Pod).Spec }),
	[]func(*rand.Rand, runtime.Object){
		func(r *rand.Rand, o runtime.Object) {
			p := o.(*corev1.Pod)
			p.Status.Phase = pick(r, []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded})
		},
		func(r *rand.Rand, o runtime.Object) {
			p := o.(*corev1.Pod)
			switch r.Intn(4) {
			case 0:
				p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue})
			case 1:
				if len(p.Status.Conditions) > 0 {
					p.Status.Conditions = p.Status.Conditions[1:]
				}
			default:
				if len(p.Status.Conditions) > 0 {
					c := &p.Status.Conditions[r.Intn(len(p.Status.Conditions))]
					c.Status = pick(r, []corev1.ConditionStatus{corev1.ConditionTrue, corev1.ConditionFalse})
					c.LastTransitionTime = randTime(r)
					c.LastProbeTime = randTime(r)
				}
			}
		},
		func(r *rand.Rand, o runtime.Object) { o.(*corev1.Pod).Status.StartTime = randTimePtr(r) },
		func(r *rand.Rand, o runtime.Object) {
			p := o.(*corev1.Pod)
			if len(p.Status.ContainerStatuses) == 0 {
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "web"}}
			}
			cs := &p.Status.ContainerStatuses[0]
			switch r.Intn(4) {
			case 0:
				cs.RestartCount = int32(r.Intn(3))
			case 1:
				cs.Ready = r.Intn(2) == 0
			case 2:
				b := r.Intn(2) == 0
				cs.Started = &b
			case 3:
				if r.Intn(2) == 0 {
					cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: randTime(r)}}
				} else {
					cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: int32(r.Intn(2)), FinishedAt: randTime(r)}}
				}
			}
		},
		func(r *rand.Rand, o runtime.Object) {
			p := o.(*corev1.Pod)
			ip := pick(r, []string{"", "10.1.2.3", "10.1.2.4"})
			p.Status.PodIP = ip
			if ip == "" {
				p.Status.PodIPs = nil
			} else {
				p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
			}
		},
	})

var deploymentMutations = slices.Concat(metaMutations, podSpecMutations(func(o runtime.Object) *corev1.PodSpec { return &o.(*appsv1.Deployment).Spec.Template.Spec }),
	[]func(*rand.Rand, runtime.Object){
		func(r *rand.Rand, o runtime.Object) {
			d := o.(*appsv1.Deployment)
			if r.Intn(3) == 0 {
				d.Spec.Replicas = nil
			} else {
				n := int32(r.Intn(4))
				d.Spec.Replicas = &n
			}
		},
		func(r *rand.Rand, o runtime.Object) {
			d := o.(*appsv1.Deployment)
			switch r.Intn(4) {
			case 0:
				d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
			case 1:
				v := intstr.FromInt32(int32(r.Intn(2)))
				d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &v}}
			default:
				v := intstr.FromString(pick(r, []string{"25%", "50%"}))
				d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &v}}
			}
		},
		func(r *rand.Rand, o runtime.Object) { mutateStringMap(r, &o.(*appsv1.Deployment).Spec.Template.Labels) },
		func(r *rand.Rand, o runtime.Object) {
			mutateStringMap(r, &o.(*appsv1.Deployment).Spec.Template.Annotations)
		},
		func(r *rand.Rand, o runtime.Object) {
			d := o.(*appsv1.Deployment)
			if d.Spec.Selector == nil || r.Intn(3) == 0 {
				d.Spec.Selector = &metav1.LabelSelector{}
			}
			if r.Intn(2) == 0 {
				mutateStringMap(r, &d.Spec.Selector.MatchLabels)
			} else {
				d.Spec.Selector.MatchExpressions = append(d.Spec.Selector.MatchExpressions,
					metav1.LabelSelectorRequirement{Key: pick(r, mapKeys), Operator: metav1.LabelSelectorOpIn, Values: []string{pick(r, mapValues)}})
			}
		},
		func(r *rand.Rand, o runtime.Object) {
			d := o.(*appsv1.Deployment)
			d.Status.ObservedGeneration = int64(r.Intn(5))
			d.Status.ReadyReplicas = int32(r.Intn(4))
			d.Status.AvailableReplicas = int32(r.Intn(4))
		},
		func(r *rand.Rand, o runtime.Object) {
			d := o.(*appsv1.Deployment)
			if len(d.Status.Conditions) == 0 || r.Intn(3) == 0 {
				d.Status.Conditions = append(d.Status.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue})
			}
			c := &d.Status.Conditions[r.Intn(len(d.Status.Conditions))]
			c.LastUpdateTime = randTime(r)
			c.Reason = pick(r, []string{"", "NewReplicaSetAvailable", "ReplicaSetUpdated"})
		},
	})

var configMapMutations = slices.Concat(metaMutations, []func(*rand.Rand, runtime.Object){
	func(r *rand.Rand, o runtime.Object) { mutateStringMap(r, &o.(*corev1.ConfigMap).Data) },
	func(r *rand.Rand, o runtime.Object) {
		cm := o.(*corev1.ConfigMap)
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		key := pick(r, []string{"app.properties", "log.level", "plain", "new.yaml"})
		cm.Data[key] = strings.Repeat(pick(r, mapValues), r.Intn(3))
	},
	func(r *rand.Rand, o runtime.Object) {
		cm := o.(*corev1.ConfigMap)
		key := pick(r, []string{"logo.png", "font.woff"})
		switch r.Intn(4) {
		case 0:
			delete(cm.BinaryData, key)
		case 1:
			cm.BinaryData = nil
		default:
			if cm.BinaryData == nil {
				cm.BinaryData = map[string][]byte{}
			}
			cm.BinaryData[key] = []byte(pick(r, mapValues))
		}
	},
	func(r *rand.Rand, o runtime.Object) {
		cm := o.(*corev1.ConfigMap)
		if r.Intn(3) == 0 {
			cm.Immutable = nil
		} else {
			b := r.Intn(2) == 0
			cm.Immutable = &b
		}
	},
})

var nodeMutations = slices.Concat(metaMutations, []func(*rand.Rand, runtime.Object){
	func(r *rand.Rand, o runtime.Object) {
		n := o.(*corev1.Node)
		switch r.Intn(4) {
		case 0:
			n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{pick(r, mapValues)}, SizeBytes: int64(r.Intn(1000))})
		case 1:
			if len(n.Status.Images) > 0 {
				n.Status.Images = n.Status.Images[1:]
			}
		default:
			if len(n.Status.Images) > 0 {
				img := &n.Status.Images[r.Intn(len(n.Status.Images))]
				if r.Intn(2) == 0 {
					img.SizeBytes = int64(r.Intn(3)) * 1000
				} else {
					img.Names = append(img.Names, pick(r, mapValues))
				}
			}
		}
	},
	func(r *rand.Rand, o runtime.Object) {
		n := o.(*corev1.Node)
		if len(n.Status.Conditions) == 0 {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady}}
		}
		c := &n.Status.Conditions[r.Intn(len(n.Status.Conditions))]
		c.LastHeartbeatTime = randTime(r)
		if r.Intn(2) == 0 {
			c.Status = pick(r, []corev1.ConditionStatus{corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown})
			c.LastTransitionTime = randTime(r)
		}
	},
	func(r *rand.Rand, o runtime.Object) { mutateResources(r, &o.(*corev1.Node).Status.Capacity) },
	func(r *rand.Rand, o runtime.Object) { mutateResources(r, &o.(*corev1.Node).Status.Allocatable) },
	func(r *rand.Rand, o runtime.Object) {
		n := o.(*corev1.Node)
		switch r.Intn(3) {
		case 0:
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: pick(r, mapKeys), Effect: corev1.TaintEffectNoSchedule, TimeAdded: randTimePtr(r)})
		case 1:
			n.Spec.Taints = nil
		case 2:
			n.Spec.Unschedulable = r.Intn(2) == 0
		}
	},
	func(r *rand.Rand, o runtime.Object) {
		n := o.(*corev1.Node)
		n.Status.NodeInfo.KubeletVersion = pick(r, []string{"v1.37.2", "v1.37.3"})
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(r.Intn(2)) * 10250
	},
	func(r *rand.Rand, o runtime.Object) {
		n := o.(*corev1.Node)
		if r.Intn(2) == 0 {
			n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, "fd00::/64")
		} else {
			n.Spec.PodCIDRs = nil
		}
	},
	func(r *rand.Rand, o runtime.Object) {
		n := o.(*corev1.Node)
		if r.Intn(2) == 0 {
			n.Status.VolumesAttached = append(n.Status.VolumesAttached, corev1.AttachedVolume{Name: "vol", DevicePath: pick(r, mapValues)})
		} else {
			n.Status.VolumesInUse = []corev1.UniqueVolumeName{corev1.UniqueVolumeName(pick(r, mapValues))}
		}
	},
})

// Translate gives the same event for compact states (paths from the
// encodings, previous state not decoded) as for decoded ones, under every
// config map policy and content type.
func TestTranslateUpdateOfCompactStatesMatchesDecoded(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for _, k := range []struct {
		kind    kinds.Kind
		base    runtime.Object
		mutates []func(*rand.Rand, runtime.Object)
	}{
		{kinds.Pods, realisticPod(), podMutations},
		{kinds.ConfigMaps, realisticConfigMap(), configMapMutations},
		{kinds.Nodes, realisticNode(), nodeMutations},
	} {
		prev := k.base
		for i := 0; i < 60; i++ {
			next := prev.DeepCopyObject()
			k.mutates[r.Intn(len(k.mutates))](r, next)
			pc, nc := compact(t, prev), compact(t, next)
			for _, policy := range []redact.Policy{redact.Full, redact.Hash, redact.Keys} {
				for _, ct := range []kubestreamv1.ContentType{kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF, kubestreamv1.ContentType_CONTENT_TYPE_JSON} {
					tr := &event.Translator{Cluster: "c", Instance: "i", ConfigMapData: policy, ContentType: ct}
					fromCompact, err := tr.Translate(&change.Change{Kind: k.kind, Op: change.Updated, Object: nc, Previous: pc})
					if err != nil {
						t.Fatal(err)
					}
					fromDecoded, err := tr.Translate(&change.Change{Kind: k.kind, Op: change.Updated, Object: full(t, nc), Previous: full(t, pc)})
					if err != nil {
						t.Fatal(err)
					}
					if !proto.Equal(fromCompact, fromDecoded) {
						t.Fatalf("%s %s %s: events differ:\n compact %v\n decoded %v", k.kind.Resource, redact.Names[policy], ct,
							fromCompact.GetChange().GetChangedPaths(), fromDecoded.GetChange().GetChangedPaths())
					}
				}
			}
			prev = next
		}
	}
}
