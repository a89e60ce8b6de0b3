// Package testbin helps black-box tests and the load harness run the
// kubestream binary: build it, start the control plane it watches, and
// collect its output.
package testbin

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubestream/kubestream/internal/controlplane"
)

// Build compiles ./cmd/kubestream from the module root into dir and returns
// the binary's path.
func Build(dir string) (string, error) { return GoBuild(dir, "kubestream", "./cmd/kubestream") }

// GoBuild compiles pkg (such as ./cmd/kubestream) of the kubestream module
// into dir/name and returns the binary's path. It works from any directory
// inside the module: the tests' and the benchmark commands' one way to
// build what they run.
func GoBuild(dir, name, pkg string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("find the module root (run from inside the kubestream module): %v", err)
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = filepath.Dir(mod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// BuildForTest is Build into a temporary directory of t; a failed build
// fails t.
func BuildForTest(t testing.TB) string {
	t.Helper()
	bin, err := Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// StartControlPlane runs etcd and kube-apiserver (with extra apiserver
// flags) until t's cleanup, and creates namespace ns with the returned
// admin client. Failures fail t.
func StartControlPlane(ctx context.Context, t testing.TB, ns string, apiserverArgs ...string) (*controlplane.ControlPlane, kubernetes.Interface) {
	t.Helper()
	cp, err := controlplane.Start(ctx, controlplane.Options{APIServerArgs: apiserverArgs})
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(cp.Stop)
	client, err := kubernetes.NewForConfig(cp.RestConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return cp, client
}

// SyncBuffer collects a process's output for a reader in another goroutine.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
