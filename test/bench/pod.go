// Package bench holds kubestream's in-process benchmarks (go test -bench) and
// the Pod that both they and the load harness in hack/bench use, so the
// figures of both describe the same object.
package bench

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Pod returns a pod shaped like one a Deployment makes: an owner reference,
// the usual labels, one container with an image, ports, environment, resource
// requests and limits, and probes. It has no status beyond Pending, as on a
// cluster without a scheduler. About 1.2 KB in protobuf.
func Pod(namespace, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace,
			Name:      name,
			Labels: map[string]string{
				"app.kubernetes.io/name":      "checkout",
				"app.kubernetes.io/component": "web",
				"app.kubernetes.io/part-of":   "shop",
				"pod-template-hash":           "7d9f8c6b5d",
				"team":                        "payments",
			},
			Annotations: map[string]string{
				"prometheus.io/scrape": "true",
				"prometheus.io/port":   "9090",
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "checkout-7d9f8c6b5d",
				UID:        types.UID("5a0d6e3c-7b1f-4d2e-9c8a-1f2e3d4c5b6a"),
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:  "web",
				Image: "registry.example.com/shop/checkout:1.27.3",
				Args:  []string{"--listen=:8080", "--metrics=:9090"},
				Ports: []corev1.ContainerPort{
					{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
					{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
				},
				Env: []corev1.EnvVar{
					{Name: "LOG_LEVEL", Value: "info"},
					{Name: "PAYMENTS_URL", Value: "http://payments.shop.svc:8080"},
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
				},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
					PeriodSeconds: 10,
				},
				ImagePullPolicy: corev1.PullIfNotPresent,
			}},
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			RestartPolicy:                 corev1.RestartPolicyAlways,
		},
	}
}

// ServerPod returns Pod as the apiserver stores it and an informer caches
// it: with the defaults and admission changes a create adds (tolerations,
// DNS policy, scheduler, probe and termination-message defaults, QoS class),
// an identity, and no managed fields (kubestream strips them). About 1 KB in
// protobuf.
func ServerPod(namespace, name, uid, resourceVersion string) *corev1.Pod {
	p := Pod(namespace, name)
	p.UID = types.UID(uid)
	p.ResourceVersion = resourceVersion
	p.Generation = 1
	p.CreationTimestamp = metav1.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := &p.Spec.Containers[0]
	c.Env[2].ValueFrom.FieldRef.APIVersion = "v1"
	c.ReadinessProbe.HTTPGet.Scheme = corev1.URISchemeHTTP
	c.ReadinessProbe.FailureThreshold, c.ReadinessProbe.SuccessThreshold, c.ReadinessProbe.TimeoutSeconds = 3, 1, 1
	c.TerminationMessagePath = corev1.TerminationMessagePathDefault
	c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	p.Spec.DNSPolicy = corev1.DNSClusterFirst
	p.Spec.EnableServiceLinks = ptr.To(true)
	p.Spec.PreemptionPolicy = ptr.To(corev1.PreemptLowerPriority)
	p.Spec.Priority = ptr.To[int32](0)
	p.Spec.SchedulerName = corev1.DefaultSchedulerName
	p.Spec.SecurityContext = &corev1.PodSecurityContext{}
	p.Spec.Tolerations = []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBurstable}
	return p
}
