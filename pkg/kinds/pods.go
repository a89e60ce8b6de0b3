package kinds

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// Pods are the many objects of a cluster: kept compact.
var Pods = declare(
	Kind{Resource: "pods", GVK: schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespaced: true, ProtoType: "k8s.io.api.core.v1.Pod"},
	Typed{Summarize: func(obj runtime.Object, oc *kubestreamv1.ObjectChange) {
		if p, ok := obj.(*corev1.Pod); ok {
			oc.Summary = &kubestreamv1.ObjectChange_Pod{Pod: PodSummary(p)}
		}
	}},
)

// PodSummary summarizes a pod.
func PodSummary(p *corev1.Pod) *kubestreamv1.PodSummary {
	s := &kubestreamv1.PodSummary{
		Phase:       string(p.Status.Phase),
		NodeName:    p.Spec.NodeName,
		PodIp:       p.Status.PodIP,
		Terminating: p.DeletionTimestamp != nil,
		Images:      containerImages(p.Spec.InitContainers, p.Spec.Containers),
	}
	for _, cs := range p.Status.InitContainerStatuses {
		s.Restarts += cs.RestartCount
	}
	for _, cs := range p.Status.ContainerStatuses {
		s.Restarts += cs.RestartCount
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			s.Ready = c.Status == corev1.ConditionTrue
		}
	}
	return s
}

func containerImages(groups ...[]corev1.Container) []string {
	var out []string
	for _, g := range groups {
		for _, c := range g {
			out = append(out, c.Image)
		}
	}
	return out
}
