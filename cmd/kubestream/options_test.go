package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubestream/kubestream/pkg/kinds"
)

// parseRun binds fresh options to a flag set and parses args, as runRun
// does (without the environment and config file).
func parseRun(t *testing.T, args ...string) *runOptions {
	t.Helper()
	o := newRunOptions()
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return o
}

func TestRunOptionsValidate(t *testing.T) {
	cert := filepath.Join(t.TempDir(), "client.pem")
	if err := os.WriteFile(cert, []byte("not checked here"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		// want holds one substring per expected error, in order.
		want []string
	}{
		{name: "defaults: embedded NATS"},
		{name: "stdout", args: []string{"--sink", "stdout"}},
		{name: "kafka with brokers", args: []string{"--sink", "kafka", "--kafka-brokers", "k0:9092,k1:9092"}},
		{name: "nats with url", args: []string{"--sink", "nats", "--nats-url", "nats://n:4222", "--nats-stream", "S"}},
		{name: "leader election", args: []string{"--leader-elect", "--leader-elect-resource-namespace", "ks"}},
		{name: "unknown sink", args: []string{"--sink", "carrier-pigeon"}, want: []string{`--sink "carrier-pigeon" is unknown: choose one of kafka, nats, stdout`}},
		{name: "kafka without brokers", args: []string{"--sink", "kafka"}, want: []string{"--kafka-brokers is required with --sink kafka"}},
		{name: "kafka bad broker and codec", args: []string{"--sink", "kafka", "--kafka-brokers", "k0", "--kafka-compression", "brotli"},
			want: []string{`--kafka-brokers: "k0" is not host:port`, `--kafka-compression "brotli" is unknown`}},
		{name: "kafka mtls half", args: []string{"--sink", "kafka", "--kafka-brokers", "k:9092", "--kafka-tls-cert-file", cert},
			want: []string{"--kafka-tls-cert-file and --kafka-tls-key-file go together"}},
		{name: "kafka flags ignored with another sink", args: []string{"--sink", "stdout", "--kafka-compression", "brotli"}},
		{name: "nats bad url", args: []string{"--sink", "nats", "--nats-url", "http://n:4222"}, want: []string{`--nats-url "http://n:4222": scheme "http" is not nats, tls, ws or wss`}},
		{name: "nats mtls half", args: []string{"--nats-url", "tls://n:4222", "--nats-tls-key-file", cert},
			want: []string{"--nats-tls-cert-file and --nats-tls-key-file go together"}},
		{name: "nats tls file missing", args: []string{"--nats-url", "tls://n:4222", "--nats-tls-ca-file", "/no/ca.pem"},
			want: []string{"--nats-tls-ca-file /no/ca.pem: no such file or directory"}},
		{name: "embedded with credentials", args: []string{"--nats-creds-file", cert, "--nats-tls-ca-file", cert},
			want: []string{"--nats-creds-file needs --nats-url", "--nats-tls-ca-file needs --nats-url"}},
		{name: "embedded flags with url", args: []string{"--nats-url", "nats://n:4222", "--nats-embedded-port", "4223"},
			want: []string{"--nats-embedded-dir and --nats-embedded-port apply only without --nats-url"}},
		// Names are resolved against the cluster at start; only their
		// syntax is checked here.
		{name: "malformed kind", args: []string{"--kinds", "pods,pods/status"}, want: []string{`--kinds: "pods/status" is not a kind name or pattern`}},
		{name: "kinds as kubectl names them", args: []string{"--kinds", "pods,deployments.apps,certificates.cert-manager.io,*.example.com"}},
		{name: "malformed exclusion", args: []string{"--exclude-kinds", "ev["}, want: []string{`--exclude-kinds: "ev[" is not a kind name or pattern`}},
		{name: "no kinds", args: []string{"--kinds", ","}, want: []string{"--kinds: no kinds given"}},
		{name: "selector", args: []string{"--selector", "a b"}, want: []string{`--selector "a b" is not a label selector`}},
		{name: "content type", args: []string{"--content-type", "xml"}, want: []string{`--content-type "xml" is unknown: use protobuf or json`}},
		{name: "snapshot mode", args: []string{"--snapshot-on-start", "sometimes"}, want: []string{`--snapshot-on-start "sometimes" is unknown`}},
		{name: "negative resync", args: []string{"--resync", "-1m"}, want: []string{"--resync -1m0s is negative"}},
		{name: "marker wait zero", args: []string{"--replay-marker-wait", "0"}, want: []string{"--replay-marker-wait 0 would let markers overtake"}},
		{name: "workers", args: []string{"--workers", "0"}, want: []string{"--workers and --batch-size must be at least 1"}},
		{name: "unready after", args: []string{"--unready-after", "0s"}, want: []string{"--unready-after 0s must be positive"}},
		{name: "shutdown timeout", args: []string{"--shutdown-timeout", "0s"}, want: []string{"--shutdown-timeout 0s must be positive"}},
		{name: "listen address", args: []string{"--listen-address", "8080"}, want: []string{`--listen-address "8080" is not host:port`}},
		{name: "lease durations", args: []string{"--leader-elect", "--leader-elect-lease-duration", "5s", "--leader-elect-renew-deadline", "10s"},
			want: []string{"--leader-elect-lease-duration 5s must be longer than --leader-elect-renew-deadline 10s"}},
		{name: "lease durations unchecked without election", args: []string{"--leader-elect-lease-duration", "5s", "--leader-elect-renew-deadline", "10s"}},
		{name: "image storage", args: []string{"--image-storage-max-images", "-1"}, want: []string{"--image-storage-max-images -1 is negative"}},
		{name: "every problem at once", args: []string{"--sink", "kafka", "--kinds", "Widgets!", "--resync", "-1s", "--workers", "0"},
			want: []string{`"widgets!" is not a kind name`, "--resync -1s is negative", "--workers and --batch-size", "--kafka-brokers is required"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := parseRun(t, c.args...).Validate()
			if len(errs) != len(c.want) {
				t.Fatalf("Validate() = %q, want %d errors containing %q", errs, len(c.want), c.want)
			}
			for i, w := range c.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i], w)
				}
				if strings.Contains(errs[i].Error(), "\n") {
					t.Errorf("error %d spans lines: %q", i, errs[i])
				}
			}
		})
	}
}

// The NATS TLS flags were spelled without -file before they matched
// Kafka's; the old names still set the same values.
func TestDeprecatedNATSTLSFlags(t *testing.T) {
	o := parseRun(t, "--nats-url", "tls://n:4222", "--nats-tls-ca", "/ca.pem", "--nats-tls-cert", "/c.pem", "--nats-tls-key", "/k.pem")
	tls := o.NATS.Conn.TLS
	if tls.CAFile != "/ca.pem" || tls.CertFile != "/c.pem" || tls.KeyFile != "/k.pem" {
		t.Errorf("TLS = %+v, want the files the old flags name", tls)
	}
}

func TestRunOptionsComplete(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		cfg, open, err := parseRun(t).Complete(new(bytes.Buffer))
		if err != nil || open == nil {
			t.Fatalf("Complete() = %v, opener %v", err, open)
		}
		if sel := cfg.Selection; sel == nil || strings.Join(sel.Names, ",") != "nodes,pods,deployments,configmaps" || len(sel.Patterns) != 0 ||
			strings.Join(sel.MetadataOnly, ",") != "secrets" || len(sel.Exclude) == 0 {
			t.Errorf("kind selection %+v", sel)
		}
		if cfg.LeaderElection != nil {
			t.Errorf("leader election on without --leader-elect: %+v", cfg.LeaderElection)
		}
		if len(cfg.Derivers) != 1 || strings.Join(cfg.DerivedStreams, ",") != kinds.ImageStorage {
			t.Errorf("derivers %d, derived streams %v: want image storage", len(cfg.Derivers), cfg.DerivedStreams)
		}
		if cfg.Resync != DefaultResync || cfg.Pipeline.Workers != 4 || cfg.Pipeline.BatchSize != 256 || !cfg.Resume {
			t.Errorf("config %+v does not hold the flag defaults", cfg)
		}
	})
	t.Run("leader election", func(t *testing.T) {
		cfg, _, err := parseRun(t, "--leader-elect", "--leader-elect-resource-namespace", "ks", "--leader-elect-lease-duration", "20s").Complete(new(bytes.Buffer))
		if err != nil {
			t.Fatal(err)
		}
		le := cfg.LeaderElection
		if le == nil || le.Namespace != "ks" || le.Name != "kubestream" || le.LeaseDuration != 20*time.Second {
			t.Errorf("leader election %+v", le)
		}
	})
}
