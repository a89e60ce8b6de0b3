package table

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubestream/kubestream/pkg/consumer"
)

// columns are a resource's table: kubectl's columns for the kinds
// kubestream types, NAME and AGE for the rest.
type columns struct {
	header, wide []string
	row          func(o *consumer.Object, now time.Time) (main, wide []string)
}

func columnsFor(resource string) columns {
	switch resource {
	case "pods":
		return columns{[]string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}, []string{"IP", "NODE", "NOMINATED NODE", "READINESS GATES"}, podRow}
	case "nodes":
		return columns{[]string{"NAME", "STATUS", "ROLES", "AGE", "VERSION"}, []string{"INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"}, nodeRow}
	case "deployments":
		return columns{[]string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"}, []string{"CONTAINERS", "IMAGES", "SELECTOR"}, deploymentRow}
	case "configmaps":
		return columns{[]string{"NAME", "DATA", "AGE"}, nil, configMapRow}
	}
	return columns{[]string{"NAME", "AGE"}, nil, genericRow}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func podRow(o *consumer.Object, now time.Time) ([]string, []string) {
	pod, err := o.Pod()
	if err != nil {
		// No state (truncated): what the summary says.
		s := o.Event.GetChange().GetPod()
		return []string{o.Name, "?", orNone(s.GetPhase()), strconv.Itoa(int(s.GetRestarts())), "<unknown>"},
			[]string{orNone(s.GetPodIp()), orNone(s.GetNodeName()), "<none>", "<none>"}
	}
	ready, restarts := 0, 0
	reason := string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		reason = pod.Status.Reason
	}
	for i := len(pod.Status.ContainerStatuses) - 1; i >= 0; i-- {
		c := pod.Status.ContainerStatuses[i]
		restarts += int(c.RestartCount)
		switch {
		case c.State.Waiting != nil && c.State.Waiting.Reason != "":
			reason = c.State.Waiting.Reason
		case c.State.Terminated != nil && c.State.Terminated.Reason != "":
			reason = c.State.Terminated.Reason
		case c.State.Terminated != nil:
			reason = fmt.Sprintf("ExitCode:%d", c.State.Terminated.ExitCode)
		case c.Ready && c.State.Running != nil:
			ready++
		}
	}
	if pod.DeletionTimestamp != nil {
		reason = "Terminating"
	}
	gates := "<none>"
	if n := len(pod.Spec.ReadinessGates); n > 0 {
		gates = fmt.Sprintf("0/%d", n)
	}
	ip := "<none>"
	if pod.Status.PodIP != "" {
		ip = pod.Status.PodIP
	}
	return []string{pod.Name, fmt.Sprintf("%d/%d", ready, len(pod.Spec.Containers)), reason, strconv.Itoa(restarts), age(pod.CreationTimestamp, now)},
		[]string{ip, orNone(pod.Spec.NodeName), orNone(pod.Status.NominatedNodeName), gates}
}

func nodeRow(o *consumer.Object, now time.Time) ([]string, []string) {
	node, err := o.Node()
	if err != nil {
		s := o.Event.GetChange().GetNode()
		status := "NotReady"
		if s.GetReady() {
			status = "Ready"
		}
		return []string{o.Name, status, "<none>", "<unknown>", s.GetKubeletVersion()}, []string{"<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"}
	}
	status := "Unknown"
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			status = "NotReady"
			if c.Status == corev1.ConditionTrue {
				status = "Ready"
			}
		}
	}
	if node.Spec.Unschedulable {
		status += ",SchedulingDisabled"
	}
	var roles []string
	for l := range node.Labels {
		if r, ok := strings.CutPrefix(l, "node-role.kubernetes.io/"); ok && r != "" {
			roles = append(roles, r)
		}
	}
	sort.Strings(roles)
	addr := func(t corev1.NodeAddressType) string {
		for _, a := range node.Status.Addresses {
			if a.Type == t {
				return a.Address
			}
		}
		return "<none>"
	}
	info := node.Status.NodeInfo
	kernel := orUnknown(info.KernelVersion)
	if info.KernelVersion != "" && info.Architecture != "" {
		kernel += " (" + info.Architecture + ")" // as kubectl 1.36 prints it
	}
	return []string{node.Name, status, orNone(strings.Join(roles, ",")), age(node.CreationTimestamp, now), info.KubeletVersion},
		[]string{addr(corev1.NodeInternalIP), addr(corev1.NodeExternalIP), orUnknown(info.OSImage), kernel, orUnknown(info.ContainerRuntimeVersion)}
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

func deploymentRow(o *consumer.Object, now time.Time) ([]string, []string) {
	d, err := o.Deployment()
	if err != nil {
		s := o.Event.GetChange().GetDeployment()
		return []string{o.Name, fmt.Sprintf("%d/%d", s.GetReadyReplicas(), s.GetDesiredReplicas()), strconv.Itoa(int(s.GetUpdatedReplicas())), strconv.Itoa(int(s.GetAvailableReplicas())), "<unknown>"},
			[]string{"<unknown>", strings.Join(s.GetImages(), ","), "<unknown>"}
	}
	desired := int32(1)
	if d.Spec.Replicas != nil {
		desired = *d.Spec.Replicas
	}
	var names, images []string
	for _, c := range d.Spec.Template.Spec.Containers {
		names = append(names, c.Name)
		images = append(images, c.Image)
	}
	selector := "<none>"
	if d.Spec.Selector != nil {
		if s, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil {
			selector = s.String()
		}
	}
	return []string{d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, desired), strconv.Itoa(int(d.Status.UpdatedReplicas)), strconv.Itoa(int(d.Status.AvailableReplicas)), age(d.CreationTimestamp, now)},
		[]string{strings.Join(names, ","), strings.Join(images, ","), selector}
}

func configMapRow(o *consumer.Object, now time.Time) ([]string, []string) {
	cm, err := o.ConfigMap()
	if err != nil {
		return []string{o.Name, strconv.Itoa(len(o.Event.GetChange().GetConfigMap().GetKeys())), "<unknown>"}, nil
	}
	return []string{cm.Name, strconv.Itoa(len(cm.Data) + len(cm.BinaryData)), age(cm.CreationTimestamp, now)}, nil
}

func genericRow(o *consumer.Object, now time.Time) ([]string, []string) {
	u, err := o.Unstructured()
	if err != nil {
		return []string{o.Name, "<unknown>"}, nil
	}
	return []string{o.Name, age(metav1.Time{Time: u.GetCreationTimestamp().Time}, now)}, nil
}
