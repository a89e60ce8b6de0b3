package kinds

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// Pods are the many objects of a cluster: kept compact.
var Pods = declare(
	Kind{Resource: "pods", GVK: schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespaced: true, ProtoType: "k8s.io.api.core.v1.Pod"},
	Typed{
		Summarize: func(obj runtime.Object, oc *kubestreamv1.ObjectChange) {
			if p, ok := obj.(*corev1.Pod); ok {
				oc.Summary = &kubestreamv1.ObjectChange_Pod{Pod: PodSummary(p)}
			}
		},
		DecodeForSummary: decodePodForSummary,
	},
)

// Field numbers of the parts of a Pod's protobuf PodSummary reads.
const (
	podMetadata        = 1
	podSpec            = 2
	podStatus          = 3
	specContainers     = 2
	specNodeName       = 10
	specInitContainers = 20
	containerImage     = 2
)

// decodePodForSummary decodes a pod's metadata and status and, of its spec,
// the node and the containers' images: the spec is most of a pod's bytes
// and most of the cost of decoding one (probes, environment, quantities).
func decodePodForSummary(raw []byte) (runtime.Object, error) {
	p := &corev1.Pod{}
	err := eachField(raw, func(num protowire.Number, v []byte) error {
		switch num {
		case podMetadata:
			return p.ObjectMeta.Unmarshal(v)
		case podStatus:
			return p.Status.Unmarshal(v)
		case podSpec:
			return eachField(v, func(num protowire.Number, v []byte) error {
				switch num {
				case specNodeName:
					p.Spec.NodeName = string(v)
				case specContainers, specInitContainers:
					c := corev1.Container{}
					if err := eachField(v, func(num protowire.Number, v []byte) error {
						if num == containerImage {
							c.Image = string(v)
						}
						return nil
					}); err != nil {
						return err
					}
					if num == specContainers {
						p.Spec.Containers = append(p.Spec.Containers, c)
					} else {
						p.Spec.InitContainers = append(p.Spec.InitContainers, c)
					}
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decode pod for its summary: %w", err)
	}
	return p, nil
}

// eachField calls f with the number and bytes of every length-delimited
// field of a message, in order; other fields are skipped.
func eachField(msg []byte, f func(num protowire.Number, v []byte) error) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, msg); n < 0 {
				return protowire.ParseError(n)
			}
			msg = msg[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(msg)
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		if err := f(num, v); err != nil {
			return err
		}
	}
	return nil
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
