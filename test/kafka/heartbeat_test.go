package kafka

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/resourceversion"

	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// TestHeartbeatsAndHashedConfigMapsThroughKafka runs the binary against the
// real apiserver and kfake with --heartbeat-interval 1s and
// --configmap-data hash, and reads the topic with kcat (librdkafka) and
// protoc: every partition carries heartbeats keyed
// heartbeat/configmaps/<partition>, the first one at or past a config map's
// resourceVersion comes after that config map's event on its partition and
// carries the resourceVersion, and the config map's value appears in no
// record, only its SHA-256.
func TestHeartbeatsAndHashedConfigMapsThroughKafka(t *testing.T) {
	for _, tool := range []string{"kcat", "protoc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (apt-get install kcat protobuf-compiler): %v", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := testbin.BuildForTest(t)
	const ns = "kafka-heartbeat"
	cp, client := testbin.StartControlPlane(ctx, t, ns)
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	broker := kc.ListenAddrs()[0]
	cmd := exec.Command(bin, "run", "--kubeconfig", cp.Kubeconfig, "--kinds", "configmaps", "--namespace", ns, "--resync", "0",
		"--listen-address", "", "--sink", "kafka", "--kafka-brokers", broker, "--kafka-create-topics", "--kafka-topic-partitions", "3",
		"--heartbeat-interval", "1s", "--configmap-data", "hash")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	exited := start(t, cmd)

	const secret = "password=correct-horse-battery-staple"
	cm, err := client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Data: map[string]string{"app.properties": secret}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Read until each partition has a heartbeat at or past the config map.
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics("kubestream.configmaps"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// covered: partition -> whether the config map's event came before
	// the first heartbeat at or past its resourceVersion there.
	covered := map[int32]bool{}
	cmSeen := map[int32]bool{}
	for len(covered) < 3 {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollFetches(pctx)
		pcancel()
		select {
		case err := <-exited:
			t.Fatalf("kubestream exited (%v); stderr:\n%s", err, stderr.String())
		default:
		}
		if ctx.Err() != nil {
			t.Fatalf("partitions with a heartbeat past resourceVersion %s: %v; stderr:\n%s", cm.ResourceVersion, covered, stderr.String())
		}
		fetches.EachRecord(func(r *kgo.Record) {
			ev := &kubestreamv1.Event{}
			if err := proto.Unmarshal(r.Value, ev); err != nil {
				t.Fatalf("record %s: %v", r.Key, err)
			}
			if ev.GetObject().GetUid() == string(cm.UID) {
				cmSeen[r.Partition] = true
			}
			hb := ev.GetHeartbeat()
			if hb == nil {
				return
			}
			if want := fmt.Sprintf("heartbeat/configmaps/%d", r.Partition); string(r.Key) != want {
				t.Errorf("heartbeat key %q on partition %d, want %q", r.Key, r.Partition, want)
			}
			c, err := resourceversion.CompareResourceVersion(hb.GetResourceVersion(), cm.ResourceVersion)
			if err != nil {
				t.Fatalf("heartbeat resourceVersion: %v", err)
			}
			if _, done := covered[r.Partition]; c >= 0 && !done {
				covered[r.Partition] = cmSeen[r.Partition]
			}
		})
	}
	if len(cmSeen) != 1 {
		t.Fatalf("config map event seen on partitions %v, want one", cmSeen)
	}
	for p := range cmSeen {
		if !covered[p] {
			t.Fatalf("partition %d: a heartbeat at or past resourceVersion %s came before the config map's event", p, cm.ResourceVersion)
		}
	}

	// kcat, a client nobody here wrote: keys, partitions and headers.
	out := runTool(t, ctx, nil, "kcat", "-C", "-b", broker, "-t", "kubestream.configmaps", "-o", "beginning", "-e", "-q", "-f", `%p|%o|%k|%h\n`)
	heartbeats := map[string]string{} // partition -> offset of its first heartbeat
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "|", 4)
		if len(f) == 4 && strings.HasPrefix(f[2], "heartbeat/") {
			if f[2] != "heartbeat/configmaps/"+f[0] || !strings.Contains(f[3], "ks-op=heartbeat") || !strings.Contains(f[3], "ks-kind=configmaps") {
				t.Errorf("kcat heartbeat record %q: want key heartbeat/configmaps/%s, ks-op=heartbeat, ks-kind=configmaps", line, f[0])
			}
			if _, ok := heartbeats[f[0]]; !ok {
				heartbeats[f[0]] = f[1]
			}
		}
	}
	if len(heartbeats) != 3 {
		t.Fatalf("kcat found heartbeats on partitions %v, want all 3:\n%s", heartbeats, out)
	}
	// The last heartbeat on partition 0, decoded by protoc with our schema.
	value := runTool(t, ctx, nil, "kcat", "-C", "-b", broker, "-t", "kubestream.configmaps", "-p", "0", "-o", "-1", "-c", "1", "-e", "-q", "-f", "%s")
	root := filepath.Join("..", "..")
	decoded := runTool(t, ctx, value, "protoc", "--decode", "kubestream.v1.Event",
		"-I", filepath.Join(root, "proto"), "-I", "/usr/include", filepath.Join(root, "proto", "kubestream", "v1", "event.proto"))
	t.Logf("protoc --decode of the last record on partition 0:\n%s", decoded)
	for _, want := range []string{"operation: OPERATION_HEARTBEAT", `resource: "configmaps"`, "resource_version: ", "object_count: 1", "interval_seconds: 1"} {
		if !bytes.Contains(decoded, []byte(want)) {
			t.Errorf("protoc output lacks %s", want)
		}
	}

	// No record holds the value; the config map's holds its hash.
	all := runTool(t, ctx, nil, "kcat", "-C", "-b", broker, "-t", "kubestream.configmaps", "-o", "beginning", "-e", "-q", "-f", `%s\n`)
	if bytes.Contains(all, []byte("correct-horse")) {
		t.Fatalf("the config map's value reached Kafka with --configmap-data hash")
	}
	sum := sha256.Sum256([]byte(secret))
	if !bytes.Contains(all, []byte(hex.EncodeToString(sum[:]))) {
		t.Fatalf("no record carries the value's SHA-256")
	}
	stop(ctx, t, cmd, exited, &stderr)
}

func runTool(t *testing.T, ctx context.Context, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}
