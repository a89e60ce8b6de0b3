// Package python tests the Python example: its generated protobuf code is
// current, and it rebuilds the state kubestream published from a real
// apiserver into kfake.
package python

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/consumer"
	"github.com/kubestream/kubestream/pkg/consumer/consumertest"
)

// python finds an interpreter with the example's packages.
func python(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("KUBESTREAM_PYTHON"), "/usr/bin/python3", "python3"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if err := exec.Command(c, "-c", "import confluent_kafka, google.protobuf").Run(); err == nil {
			return c
		}
	}
	t.Fatal("no python3 with confluent_kafka and google.protobuf: install the Debian packages python3-confluent-kafka and python3-protobuf (make test-deps does), or point KUBESTREAM_PYTHON at an interpreter that has them")
	return ""
}

// TestGeneratedCodeIsCurrent regenerates the Python classes with protoc
// and compares them with the checked-in ones.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Fatal("protoc not found: install the Debian package protobuf-compiler (make test-deps does)")
	}
	dir := t.TempDir()
	cmd := exec.Command(protoc, "--python_out="+dir, "-I", "../../proto", "../../proto/kubestream/v1/event.proto")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, out)
	}
	fresh, err := os.ReadFile(filepath.Join(dir, "kubestream/v1/event_pb2.py"))
	if err != nil {
		t.Fatal(err)
	}
	checkedIn, err := os.ReadFile("gen/kubestream/v1/event_pb2.py")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, checkedIn) {
		t.Fatal("examples/python/gen is stale: run 'make generate' and commit the result")
	}
}

// TestConsumerRebuildsTheState runs consumer.py against kubestream's
// Kafka topics and compares what it holds with the apiserver.
func TestConsumerRebuildsTheState(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	py := python(t)
	bin := testbin.BuildForTest(t)
	const ns = "python"
	cp, client := testbin.StartControlPlane(ctx, t, ns)
	consumertest.Populate(ctx, t, client, ns, "worker-1")
	kc := consumertest.NewKafka(t)
	p := consumertest.Start(t, bin, consumertest.KafkaRun(cp.Kubeconfig, "east", ns, kc.ListenAddrs())...)
	// Some history after the initial round: a delete and an update.
	store := consumer.NewStore(consumer.Options{})
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go consumer.Run(rctx, &consumer.Kafka{Brokers: kc.ListenAddrs(), FromStart: true, WaitForTopics: true}, store)
	consumertest.AwaitEqual(ctx, t, client, store, "east", ns, 60*time.Second, p)
	if err := client.CoreV1().Pods(ns).Delete(ctx, "db-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().ConfigMaps(ns).Delete(ctx, "flags", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	consumertest.AwaitEqual(ctx, t, client, store, "east", ns, 60*time.Second, p)

	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, py, "consumer.py", "--brokers", strings.Join(kc.ListenAddrs(), ","))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("consumer.py: %v\n%s", err, stderr.String())
	}
	t.Logf("consumer.py printed:\n%s", stdout.String())
	got := map[string]string{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var row struct{ Cluster, Key, UID, ResourceVersion, Phase string }
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if row.Cluster != "east" {
			t.Errorf("line %q: cluster %q, want east", sc.Text(), row.Cluster)
		}
		if strings.HasPrefix(row.Key, "pods/") && row.Phase != "Pending" {
			t.Errorf("line %q: phase %q, want Pending (no scheduler)", sc.Text(), row.Phase)
		}
		got[row.Key] = row.UID + "@" + row.ResourceVersion
	}
	want := map[string]string{}
	for _, o := range store.List("east", "pods", nil) {
		want[o.Key()] = o.UID + "@" + o.ResourceVersion
	}
	for _, r := range []string{"configmaps", "deployments", "nodes"} {
		for _, o := range store.List("east", r, nil) {
			want[o.Key()] = o.UID + "@" + o.ResourceVersion
		}
	}
	// The Go store equals the apiserver (AwaitEqual above); the Python
	// consumer must equal both.
	if d, err := consumertest.Diff(ctx, client, store, "east", ns); err != nil || d != "" {
		t.Fatalf("the Go store moved on: %s %v", d, err)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: consumer.py %q, apiserver %q", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: consumer.py holds %q, gone from the apiserver", k, v)
		}
	}
	if len(want) < 5 {
		t.Fatalf("only %d objects to compare: the fixture was not published", len(want))
	}
}
