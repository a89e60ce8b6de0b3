package monitoring

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kfake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubestream/kubestream/internal/testbin"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// process is a running kubestream command, stopped at the test's end.
type process struct {
	name   string
	cmd    *exec.Cmd
	stderr *testbin.SyncBuffer
	exited chan struct{}
}

func start(t *testing.T, name, bin string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(bin, args...), stderr: &testbin.SyncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// scrapeWhenReady waits for /readyz to answer 200, then parses /metrics.
func (p *process) scrapeWhenReady(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-p.exited:
			t.Fatalf("%s exited before it was ready:\n%s", p.name, p.stderr.String())
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 90s (last: %v):\n%s", p.name, err, p.stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s /metrics: %v", p.name, err)
	}
	return families
}

// TestMetricsTableMatchesExposition runs kubestream with the embedded NATS
// server, with Kafka (kfake over TCP), and alert-bridge reading the
// embedded server, scrapes each /metrics once ready, and holds the table of
// docs/metrics.md to what they expose, in both directions: every row
// exists, with its type and exactly its labels, where its "exposed" column
// says; every kubestream_* family exposed is a row.
func TestMetricsTableMatchesExposition(t *testing.T) {
	ctx := context.Background()
	docs := metricsTable(t)
	bin := testbin.BuildForTest(t)
	cp, client := testbin.StartControlPlane(ctx, t, "metrics")
	// An object, so the first round has something per kind to count.
	if _, err := client.CoreV1().ConfigMaps("metrics").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"a": "1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	common := []string{"run", "--kubeconfig", cp.Kubeconfig, "--resync", "0", "--kinds", "configmaps,nodes"}

	scrapes := map[string]map[string]*dto.MetricFamily{} // profile -> families
	natsPort := freePort(t)
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	natsRun := start(t, "kubestream run (nats)", bin, append(common, "--listen-address", natsAddr,
		"--nats-embedded-dir", t.TempDir(), "--nats-embedded-port", fmt.Sprint(natsPort))...)
	scrapes["nats"] = natsRun.scrapeWhenReady(t, natsAddr)

	bridgeAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	bridge := start(t, "kubestream alert-bridge", bin, "alert-bridge", "--source", "nats", "--nats-url", fmt.Sprintf("nats://127.0.0.1:%d", natsPort),
		"--alertmanager-url", "http://127.0.0.1:1", "--listen-address", bridgeAddr)
	scrapes["alert-bridge"] = bridge.scrapeWhenReady(t, bridgeAddr)

	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	kafkaAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	kafkaRun := start(t, "kubestream run (kafka)", bin, append(common, "--listen-address", kafkaAddr,
		"--sink", "kafka", "--kafka-brokers", strings.Join(kc.ListenAddrs(), ","), "--kafka-create-topics",
		// A pattern: the kinds followed while running have metrics of their own.
		"--kinds", "configmaps,nodes,*.example.com")...)
	scrapes["kafka"] = kafkaRun.scrapeWhenReady(t, kafkaAddr)

	// Which scrapes each "exposed" value promises a row in.
	profiles := map[string][]string{
		"always": {"nats", "kafka"}, "resume": {"nats", "kafka"},
		"nats": {"nats"}, "kafka": {"kafka"}, "alert-bridge": {"alert-bridge"}, "patterns": {"kafka"},
	}
	types := map[string]dto.MetricType{"counter": dto.MetricType_COUNTER, "gauge": dto.MetricType_GAUGE, "histogram": dto.MetricType_HISTOGRAM}
	for _, d := range docs {
		for _, profile := range profiles[d.exposed] {
			mf, ok := scrapes[profile][d.name]
			if !ok {
				t.Errorf("%s (exposed: %s) is not in the /metrics of the %s run", d.name, d.exposed, profile)
				continue
			}
			if mf.GetType() != types[d.typ] {
				t.Errorf("%s is a %s in /metrics (%s run), docs/metrics.md says %s", d.name, mf.GetType(), profile, d.typ)
			}
			for _, m := range mf.GetMetric() {
				var got []string
				for _, l := range m.GetLabel() {
					got = append(got, l.GetName())
				}
				sort.Strings(got)
				if strings.Join(got, ",") != strings.Join(d.labels, ",") {
					t.Errorf("%s has labels %v in /metrics (%s run), docs/metrics.md says %v", d.name, got, profile, d.labels)
					break
				}
			}
		}
	}
	for profile, families := range scrapes {
		for name := range families {
			if !strings.HasPrefix(name, "kubestream_") {
				continue
			}
			d, ok := docs[name]
			if !ok {
				t.Errorf("%s is exposed (%s run) but not in docs/metrics.md", name, profile)
				continue
			}
			if !contains(profiles[d.exposed], profile) {
				t.Errorf("%s is exposed in the %s run, docs/metrics.md says only %s", name, profile, d.exposed)
			}
		}
	}

	// The series the alerts pair up carry values that mean what the
	// documentation says once a replica is ready.
	for _, c := range []struct {
		name string
		want float64
	}{{"kubestream_leader", 1}, {"kubestream_initial_round_delivered", 1}, {"kubestream_informers_synced", 1}, {"kubestream_events_lost_total", 0}} {
		if got := value(scrapes["nats"][c.name]); got != c.want {
			t.Errorf("%s = %v on a ready replica, want %v", c.name, got, c.want)
		}
	}
	if got := labelled(scrapes["nats"]["kubestream_first_round_objects"], "kind", "configmaps", "result", "snapshot"); got < 1 {
		t.Errorf("kubestream_first_round_objects{kind=configmaps,result=snapshot} = %v, want at least the one created", got)
	}
	if got := labelled(scrapes["nats"]["kubestream_events_total"], "kind", "ConfigMap", "operation", "snapshot"); got < 1 {
		t.Errorf("kubestream_events_total{kind=ConfigMap,operation=snapshot} = %v, want at least 1", got)
	}
	if got := labelled(scrapes["nats"]["kubestream_replay_rounds_total"], "reason", "initial"); got != 1 {
		t.Errorf("kubestream_replay_rounds_total{reason=initial} = %v, want 1", got)
	}
}

func value(mf *dto.MetricFamily) float64 {
	if mf == nil || len(mf.GetMetric()) != 1 {
		return -1
	}
	m := mf.GetMetric()[0]
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// labelled returns the value of the series with these label pairs, -1 when
// there is none.
func labelled(mf *dto.MetricFamily, pairs ...string) float64 {
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i < len(pairs); i += 2 {
			if labels[pairs[i]] != pairs[i+1] {
				match = false
			}
		}
		if match {
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}
