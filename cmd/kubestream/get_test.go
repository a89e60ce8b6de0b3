package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/consumer"
	"github.com/kubestream/kubestream/pkg/consumer/consumertest"
)

// TestGetMatchesKubectl runs kubestream into kfake from a real apiserver
// for two cluster names, and compares `kubestream get` with `kubectl get`
// on the same apiserver, column by column (AGE only roughly: the two
// commands run a moment apart).
func TestGetMatchesKubectl(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	bin := testbin.BuildForTest(t)
	const ns = "get-e2e"
	cp, client := testbin.StartControlPlane(ctx, t, ns)
	consumertest.Populate(ctx, t, client, ns, "worker-1")
	kc := consumertest.NewKafka(t)
	brokers := strings.Join(kc.ListenAddrs(), ",")
	east := consumertest.Start(t, bin, consumertest.KafkaRun(cp.Kubeconfig, "east", ns, kc.ListenAddrs())...)
	west := consumertest.Start(t, bin, consumertest.KafkaRun(cp.Kubeconfig, "west", ns, kc.ListenAddrs())...)
	for _, p := range []*consumertest.Process{east, west} {
		store := consumer.NewStore(consumer.Options{})
		rctx, stop := context.WithTimeout(ctx, 60*time.Second)
		go consumer.Run(rctx, &consumer.Kafka{Brokers: kc.ListenAddrs(), FromStart: true, WaitForTopics: true}, store)
		consumertest.AwaitEqual(rctx, t, client, store, "east", ns, 60*time.Second, p)
		consumertest.AwaitEqual(rctx, t, client, store, "west", ns, 60*time.Second, p)
		stop()
	}
	kubectl := consumertest.Kubectl(t)
	run := func(name string, args ...string) (string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	for _, tc := range []struct{ resource, ns string }{
		{"pods", ns}, {"nodes", ""}, {"deployments", ns}, {"configmaps", ns},
	} {
		for _, wide := range []bool{false, true} {
			args := []string{"get", tc.resource}
			if tc.ns != "" {
				args = append(args, "-n", tc.ns)
			}
			if wide {
				args = append(args, "-o", "wide")
			}
			want, _ := run(kubectl, append(args, "--kubeconfig", cp.Kubeconfig)...)
			got, stderr := run(bin, append(args, "--kafka-brokers", brokers, "--cluster", "east")...)
			t.Logf("kubestream %s:\n%s\nkubectl %s:\n%s", strings.Join(args, " "), got, strings.Join(args, " "), want)
			if stderr != "" {
				t.Errorf("kubestream %s wrote to stderr: %s", strings.Join(args, " "), stderr)
			}
			compareTables(t, strings.Join(args, " "), got, want)
		}
	}

	// Two clusters and no --cluster: a CLUSTER column.
	out, _ := run(bin, "get", "pods", "-n", ns, "-l", "app=web", "--kafka-brokers", brokers)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "CLUSTER") || !strings.HasPrefix(lines[1], "east ") || !strings.HasPrefix(lines[4], "west ") {
		t.Errorf("two clusters, pods app=web: want a CLUSTER column and 2 pods each, got:\n%s", out)
	}
	// -o json is a List of the apiserver's objects.
	out, _ = run(bin, "get", "configmaps", "-n", ns, "-o", "json", "--kafka-brokers", brokers, "--cluster", "west")
	var list struct {
		Kind  string
		Items []struct {
			Metadata struct{ Name, UID, ResourceVersion string }
			Data     map[string]string
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	apiCMs, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1ListOptions())
	if err != nil {
		t.Fatal(err)
	}
	if list.Kind != "List" || len(list.Items) != len(apiCMs.Items) {
		t.Fatalf("-o json: kind %s with %d items, apiserver has %d", list.Kind, len(list.Items), len(apiCMs.Items))
	}
	for i, item := range list.Items {
		a := apiCMs.Items[i]
		if item.Metadata.UID != string(a.UID) || item.Metadata.ResourceVersion != a.ResourceVersion || len(item.Data) != len(a.Data) {
			t.Errorf("-o json item %d: %+v, apiserver %s uid %s rv %s", i, item.Metadata, a.Name, a.UID, a.ResourceVersion)
		}
	}
	// One name: the object itself, as kubectl prints it.
	out, _ = run(bin, "get", "configmaps", "settings", "-n", ns, "-o", "json", "--kafka-brokers", brokers, "--cluster", "west")
	var one struct{ Kind, APIVersion string }
	if err := json.Unmarshal([]byte(out), &one); err != nil || one.Kind != "ConfigMap" || one.APIVersion != "v1" {
		t.Errorf("get configmaps settings -o json: %+v (err %v)\n%s", one, err, out)
	}
	// Bad input: one line naming the problem.
	cmd := exec.CommandContext(ctx, bin, "get", "pods", "--kafka-brokers", brokers, "--cluster", "north")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || strings.TrimSpace(stderr.String()) != `kubestream get: no events of cluster "north" on the bus; clusters seen: east, west` {
		t.Errorf("unknown cluster: err %v, stderr %q", err, stderr.String())
	}
}

// compareTables checks two kubectl-style tables cell by cell, AGE within
// a second's rounding.
func compareTables(t *testing.T, what, got, want string) {
	t.Helper()
	g, w := cells(got), cells(want)
	if len(g) != len(w) {
		t.Errorf("%s: %d rows, kubectl %d\nkubestream:\n%s\nkubectl:\n%s", what, len(g), len(w), got, want)
		return
	}
	for i := range w {
		if len(g[i]) != len(w[i]) {
			t.Errorf("%s row %d: %q, kubectl %q", what, i, g[i], w[i])
			continue
		}
		for j := range w[i] {
			if w[0][j] == "AGE" && i > 0 {
				continue // counted at different moments; checked for shape below
			}
			if g[i][j] != w[i][j] {
				t.Errorf("%s row %d column %s: %q, kubectl %q\nkubestream:\n%s\nkubectl:\n%s", what, i, w[0][j], g[i][j], w[i][j], got, want)
			}
		}
	}
}

// cells splits a table at runs of two or more spaces (kubectl pads with at
// least three; "NOMINATED NODE" keeps its single space).
func cells(table string) [][]string {
	var out [][]string
	for _, line := range strings.Split(strings.TrimRight(table, "\n"), "\n") {
		var row []string
		for _, c := range strings.Split(line, "  ") {
			if c = strings.TrimSpace(c); c != "" {
				row = append(row, c)
			}
		}
		out = append(out, row)
	}
	return out
}

func metav1ListOptions() metav1.ListOptions { return metav1.ListOptions{} }

// TestGetReadsJetStream reads the embedded NATS server of `kubestream run`
// (found through its data directory, as tail does) and compares with kubectl.
func TestGetReadsJetStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	bin := testbin.BuildForTest(t)
	const ns = "get-nats"
	cp, client := testbin.StartControlPlane(ctx, t, ns)
	consumertest.Populate(ctx, t, client, ns, "worker-1")
	dir := t.TempDir()
	p := consumertest.Start(t, bin, "run", "--kubeconfig", cp.Kubeconfig, "--cluster-name", "local", "--namespace", ns,
		"--listen-address", "127.0.0.1:0", "--nats-embedded-dir", dir, "--nats-embedded-port", "0")
	kubectl := consumertest.Kubectl(t)
	want, err := exec.CommandContext(ctx, kubectl, "get", "pods", "-n", ns, "--kubeconfig", cp.Kubeconfig).Output()
	if err != nil {
		t.Fatal(err)
	}
	// Until the initial round is on the stream, get warns that it is not
	// synced (or finds no stream yet).
	for {
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, "get", "pods", "-n", ns, "--nats-embedded-dir", dir)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err == nil && stderr.Len() == 0 && len(cells(stdout.String())) == 4 {
			t.Logf("kubestream get pods -n %s:\n%s", ns, stdout.String())
			compareTables(t, "get pods (JetStream)", stdout.String(), string(want))
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kubestream get never showed the pods: err %v\nstdout:\n%s\nstderr:\n%s\nkubestream run stderr:\n%s", err, stdout.String(), stderr.String(), p.Stderr.String())
		case <-time.After(500 * time.Millisecond):
		}
	}
}
