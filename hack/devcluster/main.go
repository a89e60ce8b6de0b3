// Command devcluster runs a local etcd and kube-apiserver for first runs and
// demos, writes an admin kubeconfig, adds a Node object (dev-node) with
// capacity and images so the demo shows nodes and image-storage events, and
// keeps them running until interrupted. The cluster has no scheduler,
// controller-manager or kubelet: pods stay Pending and a Deployment creates
// no pods.
//
//	go run ./hack/devcluster --dir ~/.cache/kubestream/devcluster
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubestream/kubestream/internal/controlplane"
)

// nodeName is the fake node's name.
const nodeName = "dev-node"

func main() {
	home, _ := os.UserCacheDir()
	dir := flag.String("dir", filepath.Join(home, "kubestream", "devcluster"), "directory for data, logs and the kubeconfig; emptied at start")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A fresh data directory each time: the token and certificates are new.
	_ = os.RemoveAll(*dir)
	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: *dir})
	if err != nil {
		fmt.Fprintf(os.Stderr, "devcluster: %v\n", err)
		os.Exit(1)
	}
	defer cp.Stop()
	client, err := kubernetes.NewForConfig(cp.RestConfig())
	if err == nil {
		err = createNode(ctx, client)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "devcluster: %v\n", err)
		cp.Stop()
		os.Exit(1)
	}
	// The ready file tells hack/run.sh that the cluster, node included, is
	// up.
	if err := os.WriteFile(filepath.Join(*dir, "ready"), []byte(cp.URL+"\n"), 0o600); err != nil {
		fmt.Fprintf(os.Stderr, "devcluster: %v\n", err)
		cp.Stop()
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "devcluster: kube-apiserver ready at %s with node %s\ndevcluster: kubeconfig %s\n", cp.URL, nodeName, cp.Kubeconfig)
	<-ctx.Done()
}

// createNode adds a Ready node with capacity and two images in its status,
// as a kubelet would report them (there is no kubelet).
func createNode(ctx context.Context, client kubernetes.Interface) error {
	n, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName,
		Labels: map[string]string{"kubernetes.io/hostname": nodeName, "kubernetes.io/os": "linux"}}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node %s: %w", nodeName, err)
	}
	capacity := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourceEphemeralStorage: resource.MustParse("50Gi"), corev1.ResourcePods: resource.MustParse("110")}
	n.Status = corev1.NodeStatus{
		Capacity: capacity, Allocatable: capacity,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "a Node object only: no kubelet runs",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: "v1.36.3", OperatingSystem: "linux", Architecture: "amd64"},
		Images: []corev1.ContainerImage{
			{Names: []string{"registry.k8s.io/pause:3.10"}, SizeBytes: 320 << 10},
			{Names: []string{"docker.io/library/nginx:1.27"}, SizeBytes: 190 << 20},
		},
	}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set the status of node %s: %w", nodeName, err)
	}
	return nil
}
