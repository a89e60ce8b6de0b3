package kafka_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubestream/kubestream/pkg/config"
	"github.com/kubestream/kubestream/pkg/sink/kafka"
)

func TestValidate(t *testing.T) {
	valid := func() kafka.Options {
		o := kafka.NewOptions()
		o.Brokers = []string{"kafka-0:9092"}
		return o
	}
	for _, tc := range []struct {
		name   string
		change func(*kafka.Options)
		want   string // substring of the error; "" means valid
	}{
		{"defaults with brokers", func(*kafka.Options) {}, ""},
		{"no brokers", func(o *kafka.Options) { o.Brokers = nil }, "--kafka-brokers is required"},
		{"broker without port", func(o *kafka.Options) { o.Brokers = []string{"kafka-0"} }, `"kafka-0" is not host:port`},
		{"bad single topic", func(o *kafka.Options) { o.Topic = "a/b" }, "--kafka-topic"},
		{"bad prefix", func(o *kafka.Options) { o.TopicPrefix = "team events" }, "--kafka-topic-prefix"},
		{"zero partitions", func(o *kafka.Options) { o.CreateTopics = true; o.Partitions = 0 }, "--kafka-topic-partitions"},
		{"partitions unchecked without creation", func(o *kafka.Options) { o.Partitions = 0 }, ""},
		{"replication zero", func(o *kafka.Options) { o.CreateTopics = true; o.ReplicationFactor = 0 }, "--kafka-topic-replication-factor"},
		{"cleanup policy", func(o *kafka.Options) { o.CreateTopics = true; o.CleanupPolicy = "forever" }, "--kafka-topic-cleanup-policy"},
		{"compact,delete", func(o *kafka.Options) { o.CreateTopics = true; o.CleanupPolicy = "compact,delete" }, ""},
		{"topic config", func(o *kafka.Options) { o.CreateTopics = true; o.TopicConfig = []string{"retention.ms"} }, "not key=value"},
		{"compression", func(o *kafka.Options) { o.Compression = "brotli" }, `--kafka-compression "brotli" is unknown`},
		{"zstd", func(o *kafka.Options) { o.Compression = "zstd" }, ""},
		{"batch timeout", func(o *kafka.Options) { o.BatchTimeout = 0 }, "--kafka-batch-timeout"},
		{"batch bytes", func(o *kafka.Options) { o.BatchBytes = 10 }, "--kafka-batch-bytes"},
		{"cert without key", func(o *kafka.Options) { o.TLS.CertFile = "c.pem" }, "go together"},
		{"sasl unknown", func(o *kafka.Options) { o.SASL.Mechanism = "gssapi" }, `--kafka-sasl-mechanism "gssapi" is unknown`},
		{"sasl without user", func(o *kafka.Options) { o.SASL = kafka.SASLOptions{Mechanism: "plain", Password: "p"} }, "needs --kafka-sasl-username"},
		{"sasl without password", func(o *kafka.Options) { o.SASL = kafka.SASLOptions{Mechanism: "scram-sha-512", Username: "u"} }, "KUBESTREAM_KAFKA_SASL_PASSWORD"},
		{"password twice", func(o *kafka.Options) {
			o.SASL = kafka.SASLOptions{Mechanism: "plain", Username: "u", Password: "p", PasswordFile: "f"}
		}, "both directly and as --kafka-sasl-password-file"},
		{"credentials without mechanism", func(o *kafka.Options) { o.SASL.Username = "u" }, "without --kafka-sasl-mechanism"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.change(&o)
			err := o.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v, want valid", err)
			case tc.want != "" && err == nil:
				t.Errorf("Validate: valid, want error with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("Validate: %v, want error with %q", err, tc.want)
			}
		})
	}
}

// TestSettingsFromFlagsEnvAndFile sets options the three ways users can.
func TestSettingsFromFlagsEnvAndFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "kubestream.yaml")
	if err := os.WriteFile(file, []byte("kafka-brokers: [a:9092, b:9092]\nkafka-compression: zstd\nkafka-batch-timeout: 5ms\nkafka-tombstones: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBESTREAM_KAFKA_SASL_PASSWORD", "from-env")
	t.Setenv("KUBESTREAM_KAFKA_SASL_USERNAME", "svc")
	o := kafka.NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("config", "", "")
	o.AddFlags(fs)
	if err := config.Parse(fs, []string{"--config", file, "--kafka-sasl-mechanism", "scram-sha-256", "--kafka-compression", "lz4"}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.Brokers, ",") != "a:9092,b:9092" || o.Compression != "lz4" || o.BatchTimeout != 5*time.Millisecond || !o.Tombstones {
		t.Errorf("options from file and flags: %+v", o)
	}
	if o.SASL.Password != "from-env" || o.SASL.Username != "svc" || o.SASL.Mechanism != "scram-sha-256" {
		t.Errorf("SASL options %+v, want password and user from the environment", o.SASL)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
