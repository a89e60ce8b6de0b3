// Package consumertest sets up what the consumer tests and examples run
// against: a real kube-apiserver with a few objects of each typed kind, the
// built kubestream binary publishing to a Kafka wire peer (kfake) or its
// embedded NATS server, and a comparison of a consumer.Store with the
// apiserver's objects.
package consumertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubestream/kubestream/internal/controlplane"
	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/consumer"
)

// Populate creates in ns three pods (two labelled app=web), two config
// maps and a deployment, and a node named node (cluster-scoped) with
// images in its status.
func Populate(ctx context.Context, t testing.TB, client kubernetes.Interface, ns, node string) {
	t.Helper()
	for i, app := range []string{"web", "web", "db"} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", app, i), Namespace: ns, Labels: map[string]string{"app": app}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "registry.example/" + app + ":1"}}}}
		if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"settings", "flags"} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string]string{"a": "1", "b": "2"}}
		if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	replicas := int32(2)
	labels := map[string]string{"app": "api"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "registry.example/api:2"}}}}}}
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := CreateNode(ctx, client, node); err != nil {
		t.Fatal(err)
	}
}

// CreateNode creates a Ready node with capacity and two images in its
// status, as a kubelet would report them.
func CreateNode(ctx context.Context, client kubernetes.Interface, name string) error {
	n, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{"kubernetes.io/hostname": name, "node-role.kubernetes.io/worker": ""}}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	n.Status = corev1.NodeStatus{
		Capacity:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"), corev1.ResourcePods: resource.MustParse("110")},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}},
		NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.36.3", OSImage: "Debian GNU/Linux 12", KernelVersion: "6.1.0", ContainerRuntimeVersion: "containerd://2.0.0", OperatingSystem: "linux", Architecture: "amd64"},
		Images: []corev1.ContainerImage{
			{Names: []string{"registry.example/web:1"}, SizeBytes: 120 << 20},
			{Names: []string{"registry.example/api:2"}, SizeBytes: 80 << 20},
		},
	}
	n.Status.Allocatable = n.Status.Capacity
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set the status of node %s: %w", name, err)
	}
	return nil
}

// Process is a running kubestream.
type Process struct {
	Cmd    *exec.Cmd
	Stderr *testbin.SyncBuffer
	exited chan error
}

// Start runs the kubestream binary with args (after "run" comes the
// command line) until Stop or t's cleanup.
func Start(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{Cmd: exec.Command(bin, args...), Stderr: &testbin.SyncBuffer{}, exited: make(chan error, 1)}
	// Its own HOME: the embedded NATS data directory and anything else
	// under it belong to this test.
	p.Cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	p.Cmd.Stderr = p.Stderr
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.Cmd.Wait() }()
	t.Cleanup(func() { p.Stop(t) })
	return p
}

// Stop sends SIGTERM and waits for the exit; a failed exit fails t.
func (p *Process) Stop(t testing.TB) {
	if p.Cmd.ProcessState != nil {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("kubestream exited with %v; stderr:\n%s", err, p.Stderr.String())
		}
	case <-time.After(60 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.exited
		t.Errorf("kubestream did not stop within 60s of SIGTERM; stderr:\n%s", p.Stderr.String())
	}
}

// NewKafka starts a kfake cluster of three brokers until t's cleanup.
func NewKafka(t testing.TB) *kfake.Cluster {
	t.Helper()
	kc, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	return kc
}

// KafkaRun returns the command line of kubestream run publishing the four
// typed kinds of the control plane behind kubeconfig, pods, deployments and
// config maps of namespace ns only, to the brokers under the cluster name.
func KafkaRun(kubeconfig, cluster, ns string, brokers []string) []string {
	return []string{"run", "--kubeconfig", kubeconfig, "--cluster-name", cluster, "--namespace", ns,
		"--kinds", "nodes,pods,deployments,configmaps", "--listen-address", "127.0.0.1:0",
		"--sink", "kafka", "--kafka-brokers", strings.Join(brokers, ","), "--kafka-create-topics", "--kafka-topic-partitions", "3"}
}

// Diff compares what store holds of cluster with the apiserver: pods,
// deployments and config maps of ns, and nodes, by uid and
// resourceVersion. It returns "" when they agree.
func Diff(ctx context.Context, client kubernetes.Interface, store *consumer.Store, cluster, ns string) (string, error) {
	want := map[string]string{}
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for _, o := range pods.Items {
		want["pods/"+ns+"/"+o.Name] = string(o.UID) + "@" + o.ResourceVersion
	}
	cms, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for _, o := range cms.Items {
		want["configmaps/"+ns+"/"+o.Name] = string(o.UID) + "@" + o.ResourceVersion
	}
	deps, err := client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for _, o := range deps.Items {
		want["deployments/"+ns+"/"+o.Name] = string(o.UID) + "@" + o.ResourceVersion
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for _, o := range nodes.Items {
		want["nodes//"+o.Name] = string(o.UID) + "@" + o.ResourceVersion
	}
	got := map[string]string{}
	for _, r := range []string{"pods", "configmaps", "deployments", "nodes"} {
		for _, o := range store.List(cluster, r, nil) {
			got[o.Key()] = o.UID + "@" + o.ResourceVersion
		}
	}
	var diffs []string
	for k, v := range want {
		if got[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s: store %q, apiserver %q", k, got[k], v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: store %q, not on the apiserver", k, v))
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "\n"), nil
}

// AwaitEqual polls Diff until the store agrees with the apiserver, or
// fails t after within, naming the differences.
func AwaitEqual(ctx context.Context, t testing.TB, client kubernetes.Interface, store *consumer.Store, cluster, ns string, within time.Duration, p *Process) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		d, err := Diff(ctx, client, store, cluster, ns)
		if err != nil {
			t.Fatal(err)
		}
		if d == "" {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("cluster %s: the store does not match the apiserver after %s:\n%s\nkubestream stderr:\n%s", cluster, within, d, p.Stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Kubectl returns the path of the kubectl built with the control plane.
func Kubectl(t testing.TB) string {
	t.Helper()
	dir, err := controlplane.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "kubectl")
}
