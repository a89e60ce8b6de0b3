package kafka

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubestream/kubestream/internal/testbin"
)

// TestTopicsCheckedAtStartup runs the binary with --kinds
// configmaps,pods,nodes and image storage on (the default), so it needs
// kubestream.configmaps, kubestream.pods, kubestream.nodes and
// kubestream.imagestorage, against brokers that have only some of them and
// no --kafka-create-topics.
func TestTopicsCheckedAtStartup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := testbin.BuildForTest(t)
	const ns = "kafka-topics"
	cp, client := testbin.StartControlPlane(ctx, t, ns)
	if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: ns}, Data: map[string]string{"v": "7"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	command := func(kc *kfake.Cluster) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, "run", "--kubeconfig", cp.Kubeconfig, "--cluster-name", "topics",
			"--kinds", "configmaps,pods,nodes", "--namespace", ns, "--resync", "0", "--listen-address", "",
			"--resume=false", "--sink", "kafka", "--kafka-brokers", strings.Join(kc.ListenAddrs(), ","))
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		return cmd
	}

	t.Run("broker refuses to create them", func(t *testing.T) {
		kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "kubestream.configmaps", "kubestream.nodes"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(kc.Close)
		cmd := command(kc)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- cmd.Run() }()
		const bound = time.Minute
		var runErr error
		select {
		case runErr = <-done:
		case <-time.After(bound):
			cmd.Process.Kill()
			<-done
			t.Fatalf("kubestream still runs after %s with missing topics; stderr:\n%s", bound, stderr.String())
		}
		t.Logf("exited after %s: %v", time.Since(start).Round(time.Millisecond), runErr)
		var exitErr *exec.ExitError
		if !errors.As(runErr, &exitErr) || exitErr.ExitCode() != 2 {
			t.Fatalf("exit: %v, want exit code 2; stderr:\n%s", runErr, stderr.String())
		}
		if stdout.Len() > 0 {
			t.Errorf("stdout = %q, want nothing", stdout.String())
		}
		// Log lines may come first (klog: "I1201 15:44:34.123456 ..."); the
		// error is one line of its own.
		klogLine := regexp.MustCompile(`^[IWE]\d{4} `)
		var errLines []string
		for _, l := range strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n") {
			switch {
			case strings.HasPrefix(l, "kubestream run: "):
				errLines = append(errLines, l)
			case !klogLine.MatchString(l):
				t.Errorf("stderr line is neither a log line nor the error: %q", l)
			}
		}
		want := "kubestream run: Kafka topics kubestream.imagestorage, kubestream.pods do not exist and the broker does not create topics automatically: create them (see docs/kafka.md), or run with --kafka-create-topics"
		if len(errLines) != 1 || errLines[0] != want {
			t.Fatalf("error lines %q, want exactly\n%s\nstderr:\n%s", errLines, want, stderr.String())
		}
	})

	t.Run("broker creates them automatically", func(t *testing.T) {
		kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.SeedTopics(2, "kubestream.pods", "kubestream.nodes"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(kc.Close)
		cmd := command(kc)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		exited := start(t, cmd)
		r := newReader(t, kc.ListenAddrs(), "kubestream.configmaps")
		recs := r.until(ctx, t, "the snapshot of the config map", func(recs []record) bool {
			for _, rec := range recs {
				if rec.key == "configmaps/"+ns+"/settings" && rec.op == "snapshot" {
					return true
				}
			}
			return false
		}, &stderr)
		for _, rec := range recs {
			if rec.key == "configmaps/"+ns+"/settings" && rec.value != 7 {
				t.Errorf("snapshot has v=%d, want 7", rec.value)
			}
		}
		stop(ctx, t, cmd, exited, &stderr)
		for _, topic := range []string{"kubestream.configmaps", "kubestream.imagestorage"} {
			reported := false
			for _, l := range strings.Split(stderr.String(), "\n") {
				reported = reported || strings.Contains(l, "Kafka created topic automatically") && strings.Contains(l, `topic="`+topic+`"`)
			}
			if !reported {
				t.Errorf("stderr does not report the automatic creation of %s:\n%s", topic, stderr.String())
			}
		}
	})
}
