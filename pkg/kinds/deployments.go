package kinds

import (
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// Deployments keep the name "deployments" (not "deployments.apps") that
// their topics and subjects had before kinds were discovered.
var Deployments = declare(
	Kind{Resource: "deployments", GVK: schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, Namespaced: true, ProtoType: "k8s.io.api.apps.v1.Deployment"},
	Typed{Summarize: func(obj runtime.Object, oc *kubestreamv1.ObjectChange) {
		if d, ok := obj.(*appsv1.Deployment); ok {
			oc.Summary = &kubestreamv1.ObjectChange_Deployment{Deployment: DeploymentSummary(d)}
		}
	}},
)

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
