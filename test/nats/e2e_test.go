// Package nats tests the kubestream binary end to end with the NATS sink:
// `kubestream run` watches a real etcd and kube-apiserver and publishes to
// its embedded NATS server (the default) or to a separate nats-server
// process; `kubestream tail --output json` reads the events back.
package nats

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/sink/nats/natstest"
)

// proc is a running kubestream command.
type proc struct {
	cmd    *exec.Cmd
	stderr *testbin.SyncBuffer
	// exited is closed when the process ended; err is then its Wait error.
	exited chan struct{}
	err    error
}

func start(t *testing.T, bin, home string, stdout io.Writer, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	p := &proc{cmd: cmd, stderr: &testbin.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	cmd.Stdout = stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// waitFor polls the process's stderr for text.
func (p *proc) waitFor(ctx context.Context, t *testing.T, text string) string {
	t.Helper()
	for {
		if s := p.stderr.String(); strings.Contains(s, text) {
			return s
		}
		select {
		case <-p.exited:
			t.Fatalf("exited (%v) before logging %q:\n%s", p.err, text, p.stderr.String())
		case <-ctx.Done():
			t.Fatalf("no %q in the log:\n%s", text, p.stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tailEvents starts `kubestream tail --output json` and decodes its lines.
func tailEvents(t *testing.T, bin, home string, args ...string) (<-chan *kubestreamv1.Event, *proc) {
	t.Helper()
	pr, pw := io.Pipe()
	p := start(t, bin, home, pw, append([]string{"tail", "--output", "json", "--from-start"}, args...)...)
	go func() { <-p.exited; pw.Close() }()
	out := make(chan *kubestreamv1.Event, 1024)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			ev := &kubestreamv1.Event{}
			if err := protojson.Unmarshal(sc.Bytes(), ev); err != nil {
				t.Errorf("tail printed a line that is not an event: %q: %v", sc.Text(), err)
				return
			}
			out <- ev
		}
	}()
	// The pipe must not block tail once the test stops reading.
	t.Cleanup(func() {
		go io.Copy(io.Discard, pr)
	})
	return out, p
}

// scenario runs kubestream with runArgs, changes objects and reads them back
// with tail started with tailArgs.
func scenario(t *testing.T, runArgs func(home string) []string, tailArgs func(home string) []string, startedLog string) (runLog string) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := testbin.BuildForTest(t)
	const ns = "nats-e2e"
	cp, client := testbin.StartControlPlane(ctx, t, ns)
	cm := func(name, v string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string]string{"v": v}}
	}
	if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, cm("before.properties", "0"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	home := t.TempDir()
	run := start(t, bin, home, io.Discard, append([]string{"run", "--kubeconfig", cp.Kubeconfig, "--cluster-name", "e2e",
		"--kinds", "configmaps,pods", "--namespace", ns, "--resync", "0", "--listen-address", ""}, runArgs(home)...)...)
	log := run.waitFor(ctx, t, startedLog)
	events, tailProc := tailEvents(t, bin, home, tailArgs(home)...)

	next := func(what string) *kubestreamv1.Event {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("tail ended while waiting for %s:\n%s\nrun log:\n%s", what, tailProc.stderr.String(), run.stderr.String())
			}
			return ev
		case <-ctx.Done():
			t.Fatalf("no %s from tail:\n%s\nrun log:\n%s", what, tailProc.stderr.String(), run.stderr.String())
		}
		return nil
	}
	// The initial round: begin, the snapshot of the dotted name, end.
	var round []string
	for {
		ev := next("the initial round")
		round = append(round, ev.GetOperation().String()+" "+ev.GetObject().GetName())
		if ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END {
			break
		}
	}
	if got := strings.Join(round, ","); !strings.HasPrefix(got, "OPERATION_REPLAY_BEGIN") || !strings.Contains(got, "OPERATION_SNAPSHOT before.properties") {
		t.Fatalf("initial round = %s", got)
	}

	names := []string{"alpha.cfg", "beta"}
	for _, n := range names {
		if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, cm(n, "0"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: ns}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1.27"}}}}
	if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 3; v++ {
		for _, n := range names {
			if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, cm(n, strconv.Itoa(v)), metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range names {
		if err := client.CoreV1().ConfigMaps(ns).Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.CoreV1().Pods(ns).Delete(ctx, "web-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// Per object: created first, deleted last, updates in between in the
	// apiserver's order (their data values rise).
	ops := map[string][]string{}
	deleted := 0
	for deleted < len(names)+1 {
		ev := next("every delete")
		name := ev.GetObject().GetName()
		op := strings.ToLower(strings.TrimPrefix(ev.GetOperation().String(), "OPERATION_"))
		if ev.GetObject().GetKind() == "ConfigMap" && ev.GetChange().GetObject() != nil {
			got := &corev1.ConfigMap{}
			if err := got.Unmarshal(ev.GetChange().GetObject()); err != nil {
				t.Fatalf("decode config map of %s: %v", ev.GetId(), err)
			}
			op += "=" + got.Data["v"]
		}
		ops[name] = append(ops[name], op)
		if ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED {
			deleted++
		}
	}
	for _, n := range names {
		seq := ops[n]
		if len(seq) < 2 || seq[0] != "created=0" || seq[len(seq)-1] != "deleted" {
			t.Errorf("%s: ops %v, want created=0 first and deleted last", n, seq)
			continue
		}
		last := 0
		for _, op := range seq[1 : len(seq)-1] {
			v, err := strconv.Atoi(strings.TrimPrefix(op, "updated="))
			if err != nil || v <= last {
				t.Errorf("%s: ops %v out of order", n, seq)
				break
			}
			last = v
		}
		if last != 3 {
			t.Errorf("%s: ops %v, want the last update (3) before the delete", n, seq)
		}
	}
	if seq := ops["web-0"]; len(seq) < 2 || seq[0] != "created" || seq[len(seq)-1] != "deleted" {
		t.Errorf("web-0: ops %v", seq)
	}

	// The human format on a second tail, bounded by --limit.
	var text testbin.SyncBuffer
	tp := start(t, bin, home, &text, append([]string{"tail", "--output", "text", "--from-start", "--limit", "3", "--kind", "configmaps"}, tailArgs(home)...)...)
	select {
	case <-tp.exited:
		if tp.err != nil {
			t.Fatalf("tail --output text: %v\n%s", tp.err, tp.stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("tail --limit 3 did not exit")
	}
	lines := strings.Split(strings.TrimSpace(text.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "replay_begin") || !strings.Contains(lines[1], "snapshot     configmaps    nats-e2e/before.properties") {
		t.Errorf("text output:\n%s", text.String())
	}

	run.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-run.exited:
		if run.err != nil {
			t.Fatalf("kubestream run exited with %v after SIGTERM:\n%s", run.err, run.stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("kubestream run did not stop after SIGTERM")
	}
	return log
}

func TestBinaryEmbeddedDefault(t *testing.T) {
	port := natstest.FreePort(t)
	var dir string
	log := scenario(t,
		func(home string) []string {
			dir = filepath.Join(home, "nats-data")
			// No --sink: the embedded server is the default.
			return []string{"--nats-embedded-dir", dir, "--nats-embedded-port", strconv.Itoa(port)}
		},
		func(home string) []string { return []string{"--nats-embedded-dir", dir} },
		"Embedded NATS server started",
	)
	// The start-up line says where the server listens and how to consume.
	if want := fmt.Sprintf(`url="nats://127.0.0.1:%d"`, port); !strings.Contains(log, want) {
		t.Errorf("start-up log lacks %s:\n%s", want, log)
	}
	if want := fmt.Sprintf(`consume="kubestream tail --nats-embedded-dir %s"`, dir); !strings.Contains(log, want) {
		t.Errorf("start-up log lacks %s:\n%s", want, log)
	}
}

func TestBinaryExternalNATSServer(t *testing.T) {
	srv := natstest.StartProcess(t, natstest.ProcessOptions{})
	scenario(t,
		func(string) []string {
			return []string{"--sink", "nats", "--nats-url", srv.URL(), "--nats-stream", "E2E", "--nats-stream-create", "--nats-subject-prefix", "k8s.e2e"}
		},
		func(string) []string { return []string{"--nats-url", srv.URL(), "--nats-stream", "E2E"} },
		"Publishing to JetStream",
	)
}
