// Package e2e tests the kubestream binary from the outside: it is built once,
// run as a child process against a real etcd and kube-apiserver, and judged
// only by its exit code, its stdout and its stderr.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubestream/kubestream/internal/controlplane"
	"github.com/kubestream/kubestream/internal/testbin"
)

var (
	// binary is the kubestream executable under test.
	binary string
	// cp is the control plane every test of the package shares.
	cp *controlplane.ControlPlane
	// client is an admin client of cp.
	client kubernetes.Interface
)

func TestMain(m *testing.M) {
	os.Exit(setUp(m))
}

// setUp builds the binary and starts the control plane, runs the tests, and
// tears both down. It returns the exit code.
func setUp(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "kubestream-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	binary, err = testbin.Build(tmp)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp, err = controlplane.Start(ctx, controlplane.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: start control plane: %v\n", err)
		return 1
	}
	defer cp.Stop()
	client, err = kubernetes.NewForConfig(cp.RestConfig())
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: admin client: %v\n", err)
		return 1
	}
	return m.Run()
}

// result is what a finished kubestream process left behind.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the binary to completion. The context only guards against a hang;
// the test fails if the process has to be killed.
func run(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("kubestream %s did not exit within %s; stderr:\n%s", strings.Join(args, " "), timeout, stderr.String())
	}
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run kubestream %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// command prepares the binary with an environment that holds no kubestream
// settings and no kubeconfig of the machine running the tests, so only the
// arguments count.
func command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, binary, args...)
	env := []string{"HOME=" + os.TempDir(), "KUBECONFIG=" + filepath.Join(os.TempDir(), "kubestream-e2e-no-kubeconfig")}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "KUBESTREAM_") || name == "KUBECONFIG" || name == "HOME" || name == "POD_NAME" {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// writeKubeconfig writes a kubeconfig for cp's admin, changed by edit.
func writeKubeconfig(t *testing.T, edit func(cfg *clientcmdapi.Config)) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(cp.Kubeconfig)
	if err != nil {
		t.Fatalf("load control plane kubeconfig: %v", err)
	}
	if edit != nil {
		edit(cfg)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatalf("write kubeconfig: %v", err)
	}
	return path
}

// writeFile writes content into a new file of the test's temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}
