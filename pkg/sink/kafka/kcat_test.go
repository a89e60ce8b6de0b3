package kafka_test

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// TestIndependentConsumer reads what the sink wrote with kcat (librdkafka,
// a client nobody here wrote) and decodes a value with protoc and the
// project's .proto: the records are readable without our code.
// CI installs the Debian packages kcat and protobuf-compiler.
func TestIndependentConsumer(t *testing.T) {
	for _, tool := range []string{"kcat", "protoc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (apt-get install kcat protobuf-compiler): %v", tool, err)
		}
	}
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	o.Partitions = 1 // one partition: kcat's output order is the write order
	o.Compression = "lz4"
	o.Tombstones = true
	s := openSink(t, ctx, o)
	web := pod("shop", "web", "uid-web", "5")
	publish(t, ctx, s, marker(change.ReplayBegin, "r1", "pods"))
	publish(t, ctx, s, created(kinds.Pods, web))
	publish(t, ctx, s, deleted(kinds.Pods, web))
	broker := o.Brokers[0]

	out := run(t, ctx, nil, "kcat", "-C", "-b", broker, "-t", "kubestream.pods", "-o", "beginning", "-e", "-q",
		"-f", `%k|%h|%S|%T\n`)
	t.Logf("kcat -f '%%k|%%h|%%S|%%T':\n%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 {
		t.Fatalf("kcat read %d records, want 4 (marker, created, deleted, tombstone):\n%s", len(lines), out)
	}
	for i, want := range []struct{ key, op string }{
		{"replay/0", "ks-op=replay_begin"},
		{"pods/shop/web", "ks-op=created"},
		{"pods/shop/web", "ks-op=deleted"},
		{"pods/shop/web", "ks-op=tombstone"},
	} {
		fields := strings.SplitN(lines[i], "|", 4)
		if len(fields) != 4 || fields[0] != want.key || !strings.Contains(fields[1], want.op) {
			t.Fatalf("kcat record %d: %q, want key %s and header %s", i, lines[i], want.key, want.op)
		}
		// Time-based retention deletes by record timestamp: records must
		// carry when they were observed, not 0 (1970).
		if ms, err := strconv.ParseInt(fields[3], 10, 64); err != nil || time.Since(time.UnixMilli(ms)).Abs() > time.Hour {
			t.Errorf("kcat record %d timestamp %q, want about now", i, fields[3])
		}
		if i < 3 && !strings.Contains(fields[1], "content-type=application/x-protobuf") {
			t.Errorf("kcat record %d headers %q lack the content type", i, fields[1])
		}
	}
	if size := strings.SplitN(lines[3], "|", 4)[2]; size != "-1" {
		t.Errorf("tombstone value size %s in kcat, want -1 (null)", size)
	}

	// The created event's raw value, decoded by protoc with our schema.
	value := run(t, ctx, nil, "kcat", "-C", "-b", broker, "-t", "kubestream.pods", "-o", "1", "-c", "1", "-e", "-q", "-f", "%s")
	root := filepath.Join("..", "..", "..")
	decoded := run(t, ctx, value, "protoc", "--decode", "kubestream.v1.Event",
		"-I", filepath.Join(root, "proto"), "-I", "/usr/include", filepath.Join(root, "proto", "kubestream", "v1", "event.proto"))
	t.Logf("protoc --decode kubestream.v1.Event:\n%s", decoded)
	for _, want := range []string{`operation: OPERATION_CREATED`, `kind: "Pod"`, `namespace: "shop"`, `name: "web"`, `uid: "uid-web"`, `phase: "Running"`} {
		if !bytes.Contains(decoded, []byte(want)) {
			t.Errorf("protoc --decode output lacks %s:\n%s", want, decoded)
		}
	}
}

func run(t *testing.T, ctx context.Context, stdin []byte, name string, args ...string) []byte {
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
