package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TestBadInput checks that every mistake a user can make on the command line
// ends with exit code 2 and one short line that names the mistake, not a
// stack trace or a usage dump. Each run gets a working kubeconfig, so a value
// that slipped through validation would connect and keep running, which the
// test reports as a failure.
func TestBadInput(t *testing.T) {
	good := writeKubeconfig(t, nil)
	garbage := writeFile(t, "garbage-kubeconfig", "}}} this is not a kubeconfig {{{\n")
	unknownKey := writeFile(t, "kubestream.yaml", "kafka-brokerz: [a:9092]\n")
	missing := strings.TrimSuffix(t.TempDir(), "/") + "/no-such-kubeconfig"

	tests := []struct {
		name string
		args []string
		// want are substrings of the error line: what is wrong and, where
		// there is one, how to fix it.
		want []string
	}{
		{"unknown kind", []string{"--kinds", "pods,podz"}, []string{`unknown kind "podz"`, "did you mean pods"}},
		{"bad kind pattern", []string{"--kinds", "pods/status"}, []string{`"pods/status" is not a kind name or pattern`}},
		{"bad selector", []string{"--selector", "a b c"}, []string{`"a b c"`, "label selector"}},
		{"bad content type", []string{"--content-type", "xml"}, []string{`--content-type "xml" is unknown`, "use protobuf or json"}},
		{"unknown sink", []string{"--sink", "carrier-pigeon"}, []string{`--sink "carrier-pigeon" is unknown`, "choose one of", "stdout"}},
		{"unknown flag", []string{"--no-such-flag"}, []string{"unknown flag: --no-such-flag"}},
		{"stray argument", []string{"stray"}, []string{`unexpected argument "stray"`, "flags start with --"}},
		{"negative resync", []string{"--resync", "-1s"}, []string{"--resync -1s is negative", "use 0 to disable"}},
		{"resync not a duration", []string{"--resync", "often"}, []string{`invalid argument "often" for "--resync"`}},
		{"unknown config file key", []string{"--config", unknownKey}, []string{unknownKey, `unknown setting "kafka-brokerz"`, "flag names"}},
		{"unreadable kubeconfig", []string{"--kubeconfig", missing}, []string{missing, "no such file"}},
		{"garbage kubeconfig", []string{"--kubeconfig", garbage}, []string{garbage, "--kubeconfig"}},
		{"unknown context", []string{"--context", "no-such-context"}, []string{`context "no-such-context" does not exist`}},
		{"unknown config map policy", []string{"--configmap-data", "mask"}, []string{`--configmap-data "mask" is not a policy`, "full, hash, keys"}},
		{"ignore rule of a kind not watched", []string{"--kinds", "pods", "--ignore-paths", "secrets:data"}, []string{`--ignore-paths names kind "secrets", which is not watched`, "add it to --kinds"}},
		{"ignore rule that is not a path", []string{"--ignore-paths", "nodes:status..conditions"}, []string{`path "status..conditions" is not a field path`, "write it like"}},
		{"negative heartbeat interval", []string{"--heartbeat-interval", "-1s"}, []string{"--heartbeat-interval -1s is negative", "use 0 to disable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"run", "--kubeconfig", good, "--sink", "stdout", "--listen-address", "127.0.0.1:0", "--resync", "0"}, tt.args...)
			res := run(t, 30*time.Second, args...)
			if res.code != 2 {
				t.Fatalf("exit code = %d, want 2; stderr:\n%s", res.code, res.stderr)
			}
			if res.stdout != "" {
				t.Errorf("stdout = %q, want nothing: bad input must not produce events", res.stdout)
			}
			assertOneErrorLine(t, res.stderr, tt.want...)
		})
	}
}

// assertOneErrorLine checks that stderr is short (a log line at most before
// the error), has exactly one "kubestream run:" line, and that this line holds
// every wanted substring.
func assertOneErrorLine(t *testing.T, stderr string, want ...string) {
	t.Helper()
	ls := lines(stderr)
	if len(ls) == 0 || len(ls) > 2 {
		t.Fatalf("stderr has %d lines, want 1 or 2:\n%s", len(ls), stderr)
	}
	for _, bad := range []string{"goroutine ", "panic", "Usage:", "Flags:"} {
		if strings.Contains(stderr, bad) {
			t.Fatalf("stderr contains %q, want only the error line:\n%s", bad, stderr)
		}
	}
	var errLines []string
	for _, l := range ls {
		if strings.HasPrefix(l, "kubestream run: ") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 1 {
		t.Fatalf("want exactly one line starting with %q, got:\n%s", "kubestream run: ", stderr)
	}
	for _, w := range want {
		if !strings.Contains(errLines[0], w) {
			t.Errorf("error line lacks %q:\n%s", w, errLines[0])
		}
	}
}

// TestUnreachableAPIServer points kubestream at a loopback port nobody listens
// on. It must give up with an error naming the address and the flags to
// check, instead of retrying forever.
func TestUnreachableAPIServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	kubeconfig := writeKubeconfig(t, func(cfg *clientcmdapi.Config) {
		for _, c := range cfg.Clusters {
			c.Server = "https://" + addr
		}
	})
	res := run(t, 60*time.Second, "run", "--kubeconfig", kubeconfig, "--sink", "stdout", "--listen-address", "127.0.0.1:0", "--resync", "0")
	if res.code != 2 {
		t.Fatalf("exit code %d with an unreachable apiserver, want 2 (a start-up check); stderr:\n%s", res.code, res.stderr)
	}
	assertOneErrorLine(t, res.stderr, addr, "--kubeconfig", "--context")
}

// TestEveryProblemAtOnce gives several mistakes, sink flags among them, and
// a kubeconfig that does not exist: every mistake is reported, one line
// each, with exit code 2, and nothing is said about the cluster because
// nothing tried to reach it.
func TestEveryProblemAtOnce(t *testing.T) {
	missing := t.TempDir() + "/no-such-kubeconfig"
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"kafka", []string{"--sink", "kafka", "--kafka-compression", "brotli", "--kafka-sasl-mechanism", "plain"},
			[]string{"--kafka-brokers is required with --sink kafka", `compression`, "--kafka-sasl-mechanism plain needs --kafka-sasl-username", "--kafka-sasl-mechanism plain needs a password"}},
		{"nats", []string{"--sink", "nats", "--nats-url", "http://nats:4222", "--nats-tls-cert-file", "/no/cert.pem"},
			[]string{`--nats-url "http://nats:4222": scheme "http"`, "--nats-tls-cert-file and --nats-tls-key-file go together", "--nats-tls-cert-file /no/cert.pem: no such file"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"run", "--kubeconfig", missing, "--listen-address", "127.0.0.1:0", "--kinds", "pods,widgets/status", "--resync", "-1s"}, tt.args...)
			res := run(t, 30*time.Second, args...)
			if res.code != 2 {
				t.Fatalf("exit code = %d, want 2; stderr:\n%s", res.code, res.stderr)
			}
			want := append([]string{`"widgets/status" is not a kind name or pattern`, "--resync -1s is negative"}, tt.want...)
			ls := lines(res.stderr)
			if len(ls) != len(want) {
				t.Errorf("stderr has %d lines, want %d (one per problem):\n%s", len(ls), len(want), res.stderr)
			}
			for _, w := range want {
				if !strings.Contains(res.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, res.stderr)
				}
			}
			for _, l := range ls {
				if !strings.HasPrefix(l, "kubestream run: ") {
					t.Errorf("line %q does not start with \"kubestream run: \"", l)
				}
			}
			if strings.Contains(res.stderr, "kubeconfig") || strings.Contains(res.stderr, "cluster") {
				t.Errorf("the cluster was looked at before the flags were all checked:\n%s", res.stderr)
			}
		})
	}
}

// TestForbidden runs as a user without any RBAC grant (the admin impersonates
// "nobody"): kubestream must stop at once and say which permission is
// missing.
func TestForbidden(t *testing.T) {
	kubeconfig := writeKubeconfig(t, func(cfg *clientcmdapi.Config) {
		for _, a := range cfg.AuthInfos {
			a.Impersonate = "nobody"
		}
	})
	res := run(t, 60*time.Second, "run", "--kubeconfig", kubeconfig, "--kinds", "pods", "--sink", "stdout", "--listen-address", "127.0.0.1:0", "--resync", "0")
	if res.code == 0 {
		t.Fatalf("exit code 0 without permissions; stderr:\n%s", res.stderr)
	}
	assertOneErrorLine(t, res.stderr, "not allowed to list pods", "grant get, list and watch on pods")
	if res.stdout != "" {
		t.Errorf("stdout = %q, want nothing", res.stdout)
	}
}

func TestVersion(t *testing.T) {
	res := run(t, 30*time.Second, "version")
	if res.code != 0 {
		t.Fatalf("exit code = %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	ls := lines(res.stdout)
	if len(ls) != 1 || !strings.HasPrefix(ls[0], "kubestream ") || !strings.Contains(ls[0], "wire schema v1") {
		t.Fatalf("version output = %q, want one line like %q", res.stdout, "kubestream dev (commit ..., go1.x, wire schema v1)")
	}
}

func TestNoArguments(t *testing.T) {
	res := run(t, 30*time.Second)
	if res.code != 2 {
		t.Fatalf("exit code = %d, want 2; stderr:\n%s", res.code, res.stderr)
	}
	for _, w := range []string{"Usage: kubestream <command>", "run ", "version "} {
		if !strings.Contains(res.stderr, w) {
			t.Errorf("usage lacks %q:\n%s", w, res.stderr)
		}
	}
	if res.stdout != "" {
		t.Errorf("stdout = %q, want usage on stderr only", res.stdout)
	}
}

func TestUnknownCommand(t *testing.T) {
	res := run(t, 30*time.Second, "strem")
	if res.code != 2 {
		t.Fatalf("exit code = %d, want 2; stderr:\n%s", res.code, res.stderr)
	}
	if ls := lines(res.stderr); len(ls) != 1 || !strings.Contains(ls[0], `unknown command "strem"`) || !strings.Contains(ls[0], "kubestream help") {
		t.Fatalf("stderr = %q, want one line naming the command and pointing at 'kubestream help'", res.stderr)
	}
}
