package kinds

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// Nodes stay decoded in the cache: they are few, and image-storage
// accounting reads them on every change.
var Nodes = declare(
	Kind{Resource: "nodes", GVK: schema.GroupVersionKind{Version: "v1", Kind: "Node"}, ProtoType: "k8s.io.api.core.v1.Node"},
	Typed{Decoded: true, Summarize: func(obj runtime.Object, oc *kubestreamv1.ObjectChange) {
		if n, ok := obj.(*corev1.Node); ok {
			oc.Summary = &kubestreamv1.ObjectChange_Node{Node: NodeSummary(n)}
		}
	}},
)

// NodeSummary summarizes a node.
func NodeSummary(n *corev1.Node) *kubestreamv1.NodeSummary {
	s := &kubestreamv1.NodeSummary{
		Capacity:       quantities(n.Status.Capacity),
		Allocatable:    quantities(n.Status.Allocatable),
		Unschedulable:  n.Spec.Unschedulable,
		KubeletVersion: n.Status.NodeInfo.KubeletVersion,
		ImageCount:     int32(len(n.Status.Images)),
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			s.Ready = c.Status == corev1.ConditionTrue
		}
	}
	for _, t := range n.Spec.Taints {
		s.Taints = append(s.Taints, &kubestreamv1.Taint{Key: t.Key, Value: t.Value, Effect: string(t.Effect)})
	}
	for _, img := range n.Status.Images {
		s.ImageBytes += img.SizeBytes
	}
	return s
}

func quantities(l corev1.ResourceList) map[string]string {
	if len(l) == 0 {
		return nil
	}
	out := make(map[string]string, len(l))
	for name, q := range l {
		out[string(name)] = q.String()
	}
	return out
}
