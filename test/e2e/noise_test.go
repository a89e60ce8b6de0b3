package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/resourceversion"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/tail"
)

// freePort returns a loopback address nobody listens on.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// atLeast reports whether resourceVersion a is at or after b (the
// apiserver's resourceVersions compare as documented by
// k8s.io/apimachinery/pkg/util/resourceversion).
func atLeast(t *testing.T, a, b string) bool {
	t.Helper()
	c, err := resourceversion.CompareResourceVersion(a, b)
	if err != nil {
		t.Fatalf("compare resourceVersions %q and %q: %v", a, b, err)
	}
	return c >= 0
}

// transcript collects the events of one test in tail's text form.
type transcript struct {
	t     *testing.T
	lines []string
}

// note records what the test did to the cluster.
func (tr *transcript) note(format string, args ...any) {
	tr.lines = append(tr.lines, "# "+fmt.Sprintf(format, args...))
}

func (tr *transcript) add(ev *kubestreamv1.Event) *kubestreamv1.Event {
	tr.lines = append(tr.lines, tail.TextLine(ev, time.UTC))
	return ev
}

// untilHeartbeat reads events until a nodes heartbeat at or after rv, and
// returns the events of the node named name it passed. A heartbeat at or
// after rv comes after every event up to rv, so an update with
// resourceVersion up to rv that is not among them was not published.
func (s *stream) untilHeartbeat(ctx context.Context, tr *transcript, name, rv string) []*kubestreamv1.Event {
	s.t.Helper()
	var mine []*kubestreamv1.Event
	for {
		ev := s.next(ctx, "a nodes heartbeat at resourceVersion "+rv+" or later")
		if hb := ev.GetHeartbeat(); hb != nil && hb.GetResource() == "nodes" {
			if hb.GetResourceVersion() == "" {
				s.t.Fatalf("heartbeat without a resourceVersion: %v", hb)
			}
			if atLeast(s.t, hb.GetResourceVersion(), rv) {
				tr.add(ev)
				return mine
			}
			continue
		}
		if ev.GetObject().GetName() == name {
			tr.add(ev)
			if ev.GetImageStorage() == nil {
				mine = append(mine, ev)
			}
		}
	}
}

func heartbeatPatch(ctx context.Context, t *testing.T, name string, at time.Time) *corev1.Node {
	t.Helper()
	n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n.Status.Conditions {
		n.Status.Conditions[i].LastHeartbeatTime = metav1.NewTime(at)
	}
	n, err = client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("post node heartbeat: %v", err)
	}
	return n
}

func savedRV(t *testing.T, stateFile, uid string) string {
	t.Helper()
	b, err := os.ReadFile(stateFile)
	if err != nil {
		return ""
	}
	var f struct {
		Positions map[string]struct {
			UID string `json:"uid"`
			RV  string `json:"rv"`
		} `json:"positions"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("state file: %v", err)
	}
	for _, e := range f.Positions {
		if e.UID == uid {
			return e.RV
		}
	}
	return ""
}

func metricLine(t *testing.T, addr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, name) {
			return l
		}
	}
	return ""
}

// TestNodeHeartbeatIsNotPublished runs the binary against the real
// apiserver: a node status post that changes only lastHeartbeatTime
// produces no event (proven by a heartbeat watermark past its
// resourceVersion), a label change does, the ignored updates are counted,
// and a restart resumes from the ignored update's resourceVersion: its
// resume round sends nothing for the node.
func TestNodeHeartbeatIsNotPublished(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mark := fmt.Sprint(time.Now().UnixNano())
	name := "e2e-noise-" + mark
	stateFile := filepath.Join(t.TempDir(), "state.json")
	addr := freePort(t)
	args := []string{"--kubeconfig", cp.Kubeconfig, "--sink", "stdout", "--kinds", "nodes", "--selector", "e2e-noise=" + mark,
		"--resync", "0", "--heartbeat-interval", "1s", "--state-file", stateFile, "--listen-address", addr}
	s := startStream(t, ctx, args...)
	tr := &transcript{t: t}
	for ev := s.next(ctx, "REPLAY_END"); ev.GetOperation() != kubestreamv1.Operation_OPERATION_REPLAY_END; ev = s.next(ctx, "REPLAY_END") {
		tr.add(ev)
	}

	t0 := time.Now().Truncate(time.Second)
	node, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{"e2e-noise": mark, "tier": "a"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Conditions = []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.NewTime(t0), LastTransitionTime: metav1.NewTime(t0)},
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: metav1.NewTime(t0), LastTransitionTime: metav1.NewTime(t0)},
	}
	if node, err = client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr.note("created node %s and posted its first status (resourceVersion %s)", name, node.ResourceVersion)
	got := s.untilHeartbeat(ctx, tr, name, node.ResourceVersion)
	if len(got) != 2 || got[0].GetOperation() != kubestreamv1.Operation_OPERATION_CREATED || got[1].GetOperation() != kubestreamv1.Operation_OPERATION_UPDATED {
		t.Fatalf("create and first status post: got %d events, want CREATED and UPDATED:\n%s", len(got), strings.Join(tr.lines, "\n"))
	}

	// The kubelet's periodic status post: only the heartbeat times move.
	beat := heartbeatPatch(ctx, t, name, t0.Add(40*time.Second))
	tr.note("status post changing only lastHeartbeatTime (resourceVersion %s)", beat.ResourceVersion)
	if got := s.untilHeartbeat(ctx, tr, name, beat.ResourceVersion); len(got) != 0 {
		t.Fatalf("a heartbeat-only status post was published:\n%s", strings.Join(tr.lines, "\n"))
	}

	// A label change is published, with only its path.
	beat.Labels["tier"] = "b"
	labelled, err := client.CoreV1().Nodes().Update(ctx, beat, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr.note("label tier=a -> b (resourceVersion %s)", labelled.ResourceVersion)
	got = s.untilHeartbeat(ctx, tr, name, labelled.ResourceVersion)
	if len(got) != 1 || got[0].GetOperation() != kubestreamv1.Operation_OPERATION_UPDATED ||
		strings.Join(got[0].GetChange().GetChangedPaths(), ",") != "metadata.labels.tier" || got[0].GetObject().GetResourceVersion() != labelled.ResourceVersion {
		t.Fatalf("label change: got %v, want one UPDATED at %s changing metadata.labels.tier:\n%s", got, labelled.ResourceVersion, strings.Join(tr.lines, "\n"))
	}

	// Another heartbeat post, the last change before the restart.
	last := heartbeatPatch(ctx, t, name, t0.Add(80*time.Second))
	tr.note("status post changing only lastHeartbeatTime (resourceVersion %s)", last.ResourceVersion)
	if got := s.untilHeartbeat(ctx, tr, name, last.ResourceVersion); len(got) != 0 {
		t.Fatalf("a heartbeat-only status post was published:\n%s", strings.Join(tr.lines, "\n"))
	}
	if m := metricLine(t, addr, `kubestream_updates_ignored_total{kind="nodes"}`); m != `kubestream_updates_ignored_total{kind="nodes"} 2` {
		t.Errorf("metric %q, want 2 ignored node updates", m)
	}
	// Its position is saved although nothing was published for it.
	for savedRV(t, stateFile, string(node.UID)) != last.ResourceVersion {
		select {
		case <-ctx.Done():
			t.Fatalf("state file never held the ignored update's resourceVersion %s (holds %q)", last.ResourceVersion, savedRV(t, stateFile, string(node.UID)))
		case <-time.After(50 * time.Millisecond):
		}
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	tr.note("state file holds resourceVersion %s for the node; SIGKILL, restart", last.ResourceVersion)

	// The restart's resume round: nothing for the node, it is where the
	// saved position says.
	r := startStream(t, ctx, args...)
	begin := tr.add(r.next(ctx, "REPLAY_BEGIN"))
	if begin.GetReplay().GetReason() != kubestreamv1.ReplayReason_REPLAY_REASON_RESUME {
		t.Fatalf("restart began with %v, want a resume round", begin)
	}
	for {
		ev := tr.add(r.next(ctx, "REPLAY_END of the resume round"))
		if ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END {
			break
		}
		if ev.GetObject().GetName() == name {
			t.Fatalf("the restart re-sent the node:\n%s", strings.Join(tr.lines, "\n"))
		}
	}
	t.Logf("transcript (tail text form):\n%s", strings.Join(tr.lines, "\n"))
	_ = client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
}
