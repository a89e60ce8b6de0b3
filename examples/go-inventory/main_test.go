package main

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/consumer/consumertest"
)

// TestInventory runs the example against two kubestream instances (cluster
// names east and west) publishing one real apiserver into kfake, and checks
// the lines it prints: the initial inventory of each cluster, then the one
// after a pod is created.
func TestInventory(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	bin := testbin.BuildForTest(t)
	example := filepath.Join(t.TempDir(), "go-inventory")
	if out, err := exec.Command("go", "build", "-o", example, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const ns = "inventory"
	cp, client := testbin.StartControlPlane(ctx, t, ns)
	consumertest.Populate(ctx, t, client, ns, "worker-1")
	kc := consumertest.NewKafka(t)
	consumertest.Start(t, bin, consumertest.KafkaRun(cp.Kubeconfig, "east", ns, kc.ListenAddrs())...)
	consumertest.Start(t, bin, consumertest.KafkaRun(cp.Kubeconfig, "west", ns, kc.ListenAddrs())...)

	cmd := exec.CommandContext(ctx, example, "--kafka-brokers", strings.Join(kc.ListenAddrs(), ","))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	await := func(want ...string) {
		t.Helper()
		pending := map[string]bool{}
		for _, w := range want {
			pending[w] = true
		}
		var seen []string
		for len(pending) > 0 {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the example exited; it printed:\n%s", strings.Join(seen, "\n"))
				}
				seen = append(seen, l)
				delete(pending, l)
			case <-ctx.Done():
				t.Fatalf("the example never printed %v; it printed:\n%s", pending, strings.Join(seen, "\n"))
			}
		}
		t.Logf("printed:\n%s", strings.Join(seen, "\n"))
	}
	const images = "registry.example/db:1:1,registry.example/web:1:2"
	await("cluster=east pods=3 phases=Pending:3 images="+images, "cluster=west pods=3 phases=Pending:3 images="+images)

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cache-0", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "registry.example/cache:3"}}}}
	if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const after = "registry.example/cache:3:1," + images
	await("cluster=east pods=4 phases=Pending:4 images="+after, "cluster=west pods=4 phases=Pending:4 images="+after)
}
