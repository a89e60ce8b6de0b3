package event

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// summarize fills the typed summary of obj into oc.
func summarize(oc *kubestreamv1.ObjectChange, obj any) {
	switch o := obj.(type) {
	case *corev1.Node:
		oc.Summary = &kubestreamv1.ObjectChange_Node{Node: NodeSummary(o)}
	case *corev1.Pod:
		oc.Summary = &kubestreamv1.ObjectChange_Pod{Pod: PodSummary(o)}
	case *appsv1.Deployment:
		oc.Summary = &kubestreamv1.ObjectChange_Deployment{Deployment: DeploymentSummary(o)}
	case *corev1.ConfigMap:
		oc.Summary = &kubestreamv1.ObjectChange_ConfigMap{ConfigMap: ConfigMapSummary(o)}
	}
}

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

// DeploymentSummary summarizes a deployment.
func DeploymentSummary(d *appsv1.Deployment) *kubestreamv1.DeploymentSummary {
	desired := int32(1)
	if d.Spec.Replicas != nil {
		desired = *d.Spec.Replicas
	}
	return &kubestreamv1.DeploymentSummary{
		DesiredReplicas:    desired,
		UpdatedReplicas:    d.Status.UpdatedReplicas,
		ReadyReplicas:      d.Status.ReadyReplicas,
		AvailableReplicas:  d.Status.AvailableReplicas,
		Images:             containerImages(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers),
		Generation:         d.Generation,
		ObservedGeneration: d.Status.ObservedGeneration,
		Paused:             d.Spec.Paused,
	}
}

// ConfigMapSummary summarizes a config map without its values.
func ConfigMapSummary(cm *corev1.ConfigMap) *kubestreamv1.ConfigMapSummary {
	s := &kubestreamv1.ConfigMapSummary{Immutable: cm.Immutable != nil && *cm.Immutable}
	sizes := make(map[string]int64, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		sizes[k] = int64(len(v))
	}
	for k, v := range cm.BinaryData {
		sizes[k] = int64(len(v))
	}
	keys := make([]string, 0, len(sizes))
	for k := range sizes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
		if v, ok := cm.Data[k]; ok {
			h.Write([]byte(v))
		} else {
			h.Write(cm.BinaryData[k])
		}
		h.Write([]byte{0})
	}
	s.Keys = keys
	if len(sizes) > 0 {
		s.ValueSizes = sizes
	}
	s.DataHash = hex.EncodeToString(h.Sum(nil))
	return s
}
