package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
)

// stream is a running `kubestream run --sink stdout` whose events are decoded
// as they arrive.
type stream struct {
	t      *testing.T
	cmd    *exec.Cmd
	events chan *kubestreamv1.Event
	// readErr is set when a stdout line was not a valid event.
	readErr error
	stderr  testbin.SyncBuffer
	// exited is closed when the process ended; waitErr is its result.
	exited  chan struct{}
	waitErr error
}

func startStream(t *testing.T, ctx context.Context, args ...string) *stream {
	t.Helper()
	s := &stream{t: t, events: make(chan *kubestreamv1.Event, 1024), exited: make(chan struct{})}
	s.cmd = command(ctx, append([]string{"run"}, args...)...)
	s.cmd.Stderr = &s.stderr
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start kubestream: %v", err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(s.events)
		s.readErr = decodeLines(stdout, s.events)
	}()
	go func() {
		<-readDone
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
	return s
}

// decodeLines decodes protojson events, one per line, until r ends.
func decodeLines(r io.Reader, out chan<- *kubestreamv1.Event) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		ev := &kubestreamv1.Event{}
		if err := protojson.Unmarshal(sc.Bytes(), ev); err != nil {
			_, _ = io.Copy(io.Discard, r)
			return fmt.Errorf("stdout line is not a kubestream.v1.Event: %w: %.300s", err, sc.Text())
		}
		out <- ev
	}
	return sc.Err()
}

// next returns the next event, failing the test when the stream ended or ctx
// expired first.
func (s *stream) next(ctx context.Context, waitingFor string) *kubestreamv1.Event {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			<-s.exited
			s.t.Fatalf("stdout ended while waiting for %s (read error: %v, exit: %v); stderr:\n%s", waitingFor, s.readErr, s.waitErr, s.stderr.String())
		}
		return ev
	case <-ctx.Done():
		s.t.Fatalf("no event while waiting for %s before the test's deadline; stderr:\n%s", waitingFor, s.stderr.String())
	}
	return nil
}

// TestStreamConfigMapLifecycle runs the binary against the control plane and
// checks the stream a consumer sees: the initial replay round, then the
// created, updated and deleted events of one ConfigMap, in order, with
// deterministic unique ids; and a clean exit on SIGTERM.
func TestStreamConfigMapLifecycle(t *testing.T) {
	// Guards against a hang only; nothing here measures time.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	ns := fmt.Sprintf("e2e-stream-%d", time.Now().UnixNano())
	s := startStream(t, ctx, "--kubeconfig", cp.Kubeconfig, "--sink", "stdout",
		"--listen-address", "127.0.0.1:0", "--resync", "0", "--cluster-name", "e2e", "--instance", "e2e-1")

	var all []*kubestreamv1.Event
	seen := func(ev *kubestreamv1.Event) *kubestreamv1.Event {
		all = append(all, ev)
		if ev.GetCluster() != "e2e" || ev.GetInstance() != "e2e-1" || ev.GetSchemaVersion() != event.SchemaVersion {
			t.Errorf("event %s: cluster %q, instance %q, schema %d; want e2e, e2e-1, %d",
				ev.GetId(), ev.GetCluster(), ev.GetInstance(), ev.GetSchemaVersion(), event.SchemaVersion)
		}
		return ev
	}

	// The initial list: begin marker, snapshots, end marker, nothing else.
	begin := seen(s.next(ctx, "REPLAY_BEGIN"))
	if begin.GetOperation() != kubestreamv1.Operation_OPERATION_REPLAY_BEGIN || begin.GetReplay().GetReason() != kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL {
		t.Fatalf("first event = %s (reason %s), want REPLAY_BEGIN of the initial round", begin.GetOperation(), begin.GetReplay().GetReason())
	}
	replayID := begin.GetReplayId()
	snapshots := map[string]int64{}
	for {
		ev := seen(s.next(ctx, "REPLAY_END"))
		if ev.GetReplayId() != replayID {
			t.Fatalf("event %s of the initial round has replay id %q, want %q", ev.GetOperation(), ev.GetReplayId(), replayID)
		}
		if ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END {
			for kind, n := range ev.GetReplay().GetObjectCounts() {
				if snapshots[kind] != n {
					t.Errorf("REPLAY_END counts %d %s, stream had %d snapshots of them", n, kind, snapshots[kind])
				}
			}
			break
		}
		if ev.GetOperation() != kubestreamv1.Operation_OPERATION_SNAPSHOT {
			t.Fatalf("event %s inside the initial round, want only snapshots", ev.GetOperation())
		}
		snapshots[strings.ToLower(ev.GetObject().GetKind())+"s"]++
	}
	if snapshots["configmaps"] == 0 {
		t.Errorf("no ConfigMap snapshot in the initial round; the control plane always has some in kube-system")
	}

	// Changes made after the initial round.
	cms := client.CoreV1().ConfigMaps(ns)
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	const name, key = "app.config.v1", "app.properties"
	created, err := cms.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "e2e"}},
		Data:       map[string]string{key: "colour=blue\n", "other": "unchanged"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create config map: %v", err)
	}
	upd := created.DeepCopy()
	upd.Data[key] = "colour=green\n"
	updated, err := cms.Update(ctx, upd, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update config map: %v", err)
	}
	if err := cms.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete config map: %v", err)
	}

	var mine []*kubestreamv1.Event
	for len(mine) < 3 {
		ev := seen(s.next(ctx, fmt.Sprintf("event %d of 3 of %s/%s", len(mine)+1, ns, name)))
		if ev.GetObject().GetUid() == string(created.UID) {
			mine = append(mine, ev)
		}
	}
	wantOps := []kubestreamv1.Operation{kubestreamv1.Operation_OPERATION_CREATED, kubestreamv1.Operation_OPERATION_UPDATED, kubestreamv1.Operation_OPERATION_DELETED}
	for i, ev := range mine {
		if ev.GetOperation() != wantOps[i] {
			t.Fatalf("event %d of the config map is %s, want %s (order created, updated, deleted)", i+1, ev.GetOperation(), wantOps[i])
		}
		ref := ev.GetObject()
		if ref.GetKind() != "ConfigMap" || ref.GetVersion() != "v1" || ref.GetNamespace() != ns || ref.GetName() != name || ref.GetLabels()["app"] != "e2e" {
			t.Errorf("%s: object ref %v, want ConfigMap v1 %s/%s with label app=e2e", ev.GetOperation(), ref, ns, name)
		}
		if ev.GetReplayId() != "" {
			t.Errorf("%s: replay id %q, want none on a change", ev.GetOperation(), ev.GetReplayId())
		}
		if ev.GetChange().GetConfigMap() == nil {
			t.Errorf("%s: no ConfigMap summary", ev.GetOperation())
		}
	}
	createdEv, updatedEv, deletedEv := mine[0], mine[1], mine[2]

	if rv := createdEv.GetObject().GetResourceVersion(); rv != created.ResourceVersion {
		t.Errorf("CREATED resourceVersion %q, want %q (what the create returned)", rv, created.ResourceVersion)
	}
	if got := decodeConfigMap(t, createdEv.GetChange().GetObject()); got.Data[key] != "colour=blue\n" {
		t.Errorf("CREATED object data[%q] = %q, want the created value", key, got.Data[key])
	}
	if createdEv.GetChange().GetPrevious() != nil {
		t.Errorf("CREATED has a previous state")
	}

	if rv := updatedEv.GetObject().GetResourceVersion(); rv != updated.ResourceVersion {
		t.Errorf("UPDATED resourceVersion %q, want %q (what the update returned)", rv, updated.ResourceVersion)
	}
	paths := updatedEv.GetChange().GetChangedPaths()
	if want := `data["app.properties"]`; !slices.Contains(paths, want) {
		t.Errorf("UPDATED changed paths %q lack %q", paths, want)
	}
	if slices.Contains(paths, "data.other") {
		t.Errorf("UPDATED changed paths %q list the unchanged key data.other", paths)
	}
	if got := decodeConfigMap(t, updatedEv.GetChange().GetObject()); got.Data[key] != "colour=green\n" {
		t.Errorf("UPDATED object data[%q] = %q, want the new value", key, got.Data[key])
	}
	if got := decodeConfigMap(t, updatedEv.GetChange().GetPrevious()); got.Data[key] != "colour=blue\n" || got.ResourceVersion != created.ResourceVersion {
		t.Errorf("UPDATED previous = data[%q] %q at resourceVersion %q, want the created state %q at %q",
			key, got.Data[key], got.ResourceVersion, "colour=blue\n", created.ResourceVersion)
	}

	if got := decodeConfigMap(t, deletedEv.GetChange().GetPrevious()); got.Data[key] != "colour=green\n" {
		t.Errorf("DELETED previous data[%q] = %q, want the final state", key, got.Data[key])
	}
	if deletedEv.GetChange().GetFinalStateUnknown() {
		t.Errorf("DELETED marked final state unknown, but the watch saw the delete")
	}

	// Ids: derived from (uid, resourceVersion, operation, replay id), so a
	// consumer can drop redeliveries; unique across distinct events.
	ids := map[string]*kubestreamv1.Event{}
	for _, ev := range all {
		if prev, dup := ids[ev.GetId()]; dup {
			t.Errorf("id %s is on two events: %s %s and %s %s", ev.GetId(), prev.GetOperation(), prev.GetObject().GetName(), ev.GetOperation(), ev.GetObject().GetName())
		}
		ids[ev.GetId()] = ev
		if ev.GetReplay() == nil {
			want := event.ID(ev.GetObject().GetUid(), ev.GetObject().GetResourceVersion(), change.Op(ev.GetOperation()), ev.GetReplayId(), "")
			if ev.GetId() != want {
				t.Errorf("%s %s: id %s, want %s derived from uid, resourceVersion, operation and replay id", ev.GetOperation(), ev.GetObject().GetName(), ev.GetId(), want)
			}
		}
	}

	// SIGTERM: drain, exit 0, report nothing left behind.
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal kubestream: %v", err)
	}
	for range s.events {
	}
	select {
	case <-s.exited:
	case <-ctx.Done():
		t.Fatalf("kubestream did not exit after SIGTERM; stderr:\n%s", s.stderr.String())
	}
	if s.readErr != nil {
		t.Errorf("reading stdout: %v", s.readErr)
	}
	if s.waitErr != nil {
		t.Fatalf("kubestream exited with %v after SIGTERM, want exit code 0; stderr:\n%s", s.waitErr, s.stderr.String())
	}
	stopped := ""
	for _, l := range lines(s.stderr.String()) {
		if strings.Contains(l, `"Stopped"`) {
			stopped = l
		}
	}
	if stopped == "" || !strings.Contains(stopped, "leftUnpublished=0") {
		t.Fatalf("stderr lacks a \"Stopped\" line with leftUnpublished=0:\n%s", s.stderr.String())
	}
}

func decodeConfigMap(t *testing.T, b []byte) *corev1.ConfigMap {
	t.Helper()
	if len(b) == 0 {
		t.Fatalf("object state missing")
	}
	cm := &corev1.ConfigMap{}
	if err := cm.Unmarshal(b); err != nil {
		t.Fatalf("object state is not a protobuf k8s.io.api.core.v1.ConfigMap: %v", err)
	}
	return cm
}
