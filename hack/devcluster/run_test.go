package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubestream/kubestream/internal/testbin"
)

// TestMakeRunFirstHour runs hack/run.sh (what make run runs) against a
// local cluster twice: the first run shows a config map created meanwhile
// and the fake node with its image-storage event, and Ctrl-C (SIGINT to the
// process group, as a terminal sends it) ends it with exit 0 after a clean
// shutdown, leaving no process behind; the second run, a fresh cluster,
// starts from an empty stream: the first run's config map is not replayed.
func TestMakeRunFirstHour(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	bin := testbin.BuildForTest(t)
	dir := t.TempDir()
	first := startRun(ctx, t, bin, dir)
	kubectl := first.await(t, regexp.MustCompile(`(KUBECONFIG=\S+ \S+/kubectl) create configmap demo`))[1]
	first.await(t, regexp.MustCompile(`printing events`))
	cmd := exec.CommandContext(ctx, "bash", "-c", kubectl+" create configmap first-run-only --from-literal=a=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl: %v\n%s", err, out)
	}
	first.awaitOut(t, "first-run-only")
	first.awaitOut(t, "dev-node")
	first.awaitOut(t, "imageStorage")
	first.interrupt(t)

	second := startRun(ctx, t, bin, dir)
	second.await(t, regexp.MustCompile(`printing events`))
	// The initial round of the new cluster ends with its replay_end.
	second.awaitOut(t, "OPERATION_REPLAY_END")
	second.interrupt(t)
	if strings.Contains(second.stdout.String(), "first-run-only") {
		t.Errorf("the second local cluster's stream replays the first one's config map:\n%s", second.stdout.String())
	}
}

type runScript struct {
	cmd            *exec.Cmd
	stdout, stderr *testbin.SyncBuffer
	done           chan error
	devDir         string
}

func startRun(ctx context.Context, t *testing.T, bin, dir string) *runScript {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	r := &runScript{cmd: exec.Command("bash", "hack/run.sh"), stdout: &testbin.SyncBuffer{}, stderr: &testbin.SyncBuffer{}, done: make(chan error, 1),
		devDir: filepath.Join(dir, "devcluster")}
	r.cmd.Dir = root
	r.cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(dir, "no-kubeconfig"), "KUBESTREAM_BIN="+bin,
		"KUBESTREAM_DEVCLUSTER_DIR="+r.devDir)
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
	// Its own process group, as a terminal's foreground job.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
			<-r.done
		}
	})
	return r
}

// await waits until stderr matches re and returns the match's groups.
func (r *runScript) await(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	return r.wait(t, r.stderr, func(s string) []string { return re.FindStringSubmatch(s) }, re.String())
}

// awaitOut waits until stdout (the events tail prints) contains s.
func (r *runScript) awaitOut(t *testing.T, s string) {
	t.Helper()
	r.wait(t, r.stdout, func(out string) []string {
		if strings.Contains(out, s) {
			return []string{s}
		}
		return nil
	}, s)
}

func (r *runScript) wait(t *testing.T, buf *testbin.SyncBuffer, match func(string) []string, what string) []string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		if m := match(buf.String()); m != nil {
			return m
		}
		select {
		case err := <-r.done:
			t.Fatalf("hack/run.sh ended (%v) before %q\nstderr:\n%s", err, what, r.stderr.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("no %q from hack/run.sh\nstdout:\n%s\nstderr:\n%s", what, tail(r.stdout.String()), r.stderr.String())
	return nil
}

// interrupt sends SIGINT to the script's process group and expects exit 0
// after kubestream's clean shutdown, with every process of the group gone.
func (r *runScript) interrupt(t *testing.T) {
	t.Helper()
	pgid := r.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("hack/run.sh after ^C: %v, want exit 0\nstderr:\n%s", err, r.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("hack/run.sh did not stop within 60s of ^C\nstderr:\n%s", r.stderr.String())
	}
	if !strings.Contains(r.stderr.String(), "make run: stopped cleanly") {
		t.Errorf("no clean-stop line after ^C:\n%s", r.stderr.String())
	}
	if err := syscall.Kill(-pgid, 0); err == nil {
		t.Errorf("processes of the run's group are still running after it exited")
	}
	// etcd and kube-apiserver run in groups of their own: find them by
	// the cluster's directory on their command lines.
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), r.devDir) {
			t.Errorf("still running after the run ended: %s", strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

func tail(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
