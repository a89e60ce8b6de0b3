// Package kafka tests the kubestream binary end to end with the Kafka sink:
// the built binary watches a real etcd and kube-apiserver and writes into an
// in-process Kafka (kfake) over TCP; the test changes objects with client-go
// and reads the records back with franz-go.
package kafka

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

func TestBinaryStreamsToKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := testbin.BuildForTest(t)
	const ns = "kafka-e2e"
	cp, client := testbin.StartControlPlane(ctx, t, ns)
	kc, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	// One object exists before kubestream starts: it arrives as a snapshot
	// between the initial round's markers.
	mkCM := func(name, v string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string]string{"v": v}}
	}
	if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, mkCM("before", "0"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Settings come three ways: flags, environment and the config file.
	cfgFile := filepath.Join(t.TempDir(), "kubestream.yaml")
	if err := os.WriteFile(cfgFile, []byte("kafka-create-topics: true\nkafka-topic-partitions: 3\nkafka-compression: zstd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfgFile, "--kubeconfig", cp.Kubeconfig, "--cluster-name", "e2e",
		"--kinds", "configmaps", "--namespace", ns, "--resync", "0", "--listen-address", "",
		"--sink", "kafka", "--kafka-brokers", strings.Join(kc.ListenAddrs(), ","))
	cmd.Env = append(os.Environ(), "KUBESTREAM_KAFKA_TOMBSTONES=true", "HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	exited := start(t, cmd)

	r := newReader(t, kc.ListenAddrs(), "kubestream.configmaps")
	r.until(ctx, t, "the initial round's end marker", func(recs []record) bool {
		for _, rec := range recs {
			if rec.op == "replay_end" {
				return true
			}
		}
		return false
	}, &stderr)

	// Live changes: create, three updates and a delete of each object.
	names := []string{"alpha", "beta", "gamma"}
	for _, n := range names {
		if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, mkCM(n, "0"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for v := 1; v <= 3; v++ {
		for _, n := range names {
			if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, mkCM(n, strconv.Itoa(v)), metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range names {
		if err := client.CoreV1().ConfigMaps(ns).Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	recs := r.until(ctx, t, "every object's tombstone", func(recs []record) bool {
		done := 0
		for _, rec := range recs {
			if rec.op == "tombstone" {
				done++
			}
		}
		return done == len(names)
	}, &stderr)

	byKey := map[string][]record{}
	for _, rec := range recs {
		byKey[rec.key] = append(byKey[rec.key], rec)
	}
	if ops := opsOf(byKey["configmaps/"+ns+"/before"]); len(ops) != 1 || ops[0] != "snapshot" {
		t.Errorf("pre-existing object: %v, want one snapshot", ops)
	}
	for _, n := range names {
		key := "configmaps/" + ns + "/" + n
		got := byKey[key]
		ops := opsOf(got)
		t.Logf("%s: %v", key, ops)
		// Pending changes of one object coalesce when kubestream lags (a
		// create and its updates become one create), so the exact count
		// varies; the shape does not.
		if !validOps(ops) {
			t.Errorf("%s: operations %v, want created, updated..., deleted, tombstone", key, ops)
			continue
		}
		// Updates may coalesce when kubestream lags; order never breaks:
		// resourceVersions are compared only for equality, so check the
		// data value instead, which the test raised 0, 1, 2, 3.
		last := -1
		for _, rec := range got[:len(got)-1] {
			if rec.value < last {
				t.Errorf("%s: value %d after %d: out of order (%v)", key, rec.value, last, ops)
			}
			last = rec.value
			if rec.partition != got[0].partition {
				t.Errorf("%s: records in partitions %d and %d", key, got[0].partition, rec.partition)
			}
		}
		if last != 3 {
			t.Errorf("%s: final state has v=%d, want 3", key, last)
		}
	}

	stop(ctx, t, cmd, exited, &stderr)
	if !strings.Contains(stderr.String(), "Created Kafka topic") {
		t.Errorf("stderr does not report the topic creation:\n%s", stderr.String())
	}
}

// record is what the test needs of one Kafka record.
type record struct {
	key, op   string
	partition int32
	value     int // the config map's data "v"; -1 when absent
}

func validOps(ops []string) bool {
	n := len(ops)
	if n < 2 || ops[n-2] != "deleted" || ops[n-1] != "tombstone" {
		return false
	}
	for i, op := range ops[:n-2] {
		if (i == 0 && op != "created") || (i > 0 && op != "updated") {
			return false
		}
	}
	return true
}

func opsOf(recs []record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.op
	}
	return out
}

type reader struct {
	cl   *kgo.Client
	recs []record
}

func newReader(t *testing.T, brokers []string, topic string) *reader {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &reader{cl: cl}
}

// until reads records until done holds for all read so far.
func (r *reader) until(ctx context.Context, t *testing.T, what string, done func([]record) bool, stderr *bytes.Buffer) []record {
	t.Helper()
	for !done(r.recs) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := r.cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			t.Fatalf("waiting for %s: read %d records: %v\nkubestream stderr:\n%s", what, len(r.recs), r.recs, stderr.String())
		}
		fetches.EachRecord(func(kr *kgo.Record) {
			rec := record{key: string(kr.Key), partition: kr.Partition, value: -1}
			for _, h := range kr.Headers {
				if h.Key == "ks-op" {
					rec.op = string(h.Value)
				}
			}
			if kr.Value != nil {
				ev := &kubestreamv1.Event{}
				if err := proto.Unmarshal(kr.Value, ev); err != nil {
					t.Fatalf("record %s: %v", kr.Key, err)
				}
				cm := &corev1.ConfigMap{}
				state := ev.GetChange().GetObject()
				if len(state) == 0 {
					state = ev.GetChange().GetPrevious()
				}
				if len(state) > 0 {
					if err := cm.Unmarshal(state); err != nil {
						t.Fatalf("record %s: decode config map: %v", kr.Key, err)
					}
					rec.value, _ = strconv.Atoi(cm.Data["v"])
				}
			}
			r.recs = append(r.recs, rec)
		})
	}
	return r.recs
}

// start starts cmd (its output already set) and returns its Wait error
// once it exits; the test's cleanup kills it if it still runs.
func start(t *testing.T, cmd *exec.Cmd) <-chan error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})
	return exited
}

// stop sends kubestream SIGTERM and expects a clean exit before ctx ends.
func stop(ctx context.Context, t *testing.T, cmd *exec.Cmd, exited <-chan error, stderr *bytes.Buffer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("kubestream exited with %v after SIGTERM; stderr:\n%s", err, stderr.String())
		}
	case <-ctx.Done():
		t.Fatalf("kubestream did not stop after SIGTERM; stderr:\n%s", stderr.String())
	}
}
