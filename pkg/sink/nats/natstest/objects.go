package natstest

import (
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// Pod returns a pod shaped like a real workload's: labels, annotations, two
// containers with env, resources and probes, and status. Its event is a few
// KB, about what a production pod update weighs.
func Pod(ns, name, uid string, rv int) *corev1.Pod {
	ts := metav1.NewTime(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	container := func(n, image string) corev1.Container {
		c := corev1.Container{
			Name:  n,
			Image: image,
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")},
			},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz"}}, PeriodSeconds: 10},
		}
		for i := 0; i < 12; i++ {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("SETTING_%02d", i), Value: fmt.Sprintf("value-of-setting-%02d-for-%s", i, name)})
		}
		return c
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, UID: types.UID(uid), ResourceVersion: strconv.Itoa(rv),
			CreationTimestamp: ts,
			Labels:            map[string]string{"app": "checkout", "team": "payments", "pod-template-hash": "7d9f8b6c5d"},
			Annotations:       map[string]string{"kubectl.kubernetes.io/restartedAt": ts.Format(time.RFC3339), "prometheus.io/scrape": "true", "revision": strconv.Itoa(rv)},
			OwnerReferences:   []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: name + "-rs", UID: types.UID(uid + "-rs")}},
		},
		Spec: corev1.PodSpec{
			NodeName:           "node-a.example.internal",
			ServiceAccountName: "checkout",
			Containers:         []corev1.Container{container("app", "registry.example.com/payments/checkout:v1.42.0"), container("sidecar", "registry.example.com/mesh/proxy:v2.3.1")},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.1.2.3", HostIP: "192.168.0.10", StartTime: &ts,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: ts},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: ts},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: ts},
			},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", Ready: true, RestartCount: int32(rv % 3), Image: "registry.example.com/payments/checkout:v1.42.0", ImageID: "registry.example.com/payments/checkout@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
				{Name: "sidecar", Ready: true, Image: "registry.example.com/mesh/proxy:v2.3.1", ImageID: "registry.example.com/mesh/proxy@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"},
			},
		},
	}
}

// PodUpdate is the change from revision rv-1 to rv of a pod.
func PodUpdate(ns, name, uid string, rv int) *change.Change {
	return &change.Change{Kind: kinds.Pods, Op: change.Updated, Object: Pod(ns, name, uid, rv), Previous: Pod(ns, name, uid, rv-1), ObservedAt: time.Now()}
}

// ConfigMap returns a config map with the given data.
func ConfigMap(ns, name, uid string, rv int, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), ResourceVersion: strconv.Itoa(rv)},
		Data:       data,
	}
}

// Node returns a node with images.
func Node(name, uid string, rv int, images int) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(uid), ResourceVersion: strconv.Itoa(rv)}}
	for i := 0; i < images; i++ {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{fmt.Sprintf("registry.example.com/img-%d:v1", i)}, SizeBytes: int64(100+i) << 20})
	}
	return n
}
