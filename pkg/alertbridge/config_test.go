package alertbridge

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string // substrings, one per expected error; none means valid
	}{
		{"nats defaults with an alertmanager", []string{"--alertmanager-url", "http://am:9093"}, nil},
		{"kafka", []string{"--source", "kafka", "--kafka-brokers", "k:9092", "--alertmanager-url", "https://am.example"}, nil},
		{"HA alertmanagers and labels", []string{"--alertmanager-url", "http://a:9093,http://b:9093", "--alert-label", "team=platform", "--alert-label", "env=prod"}, nil},
		{"no alertmanager", nil, []string{"--alertmanager-url is required"}},
		{"alertmanager without scheme", []string{"--alertmanager-url", "am:9093"}, []string{"is not an http(s) URL"}},
		{"unknown source", []string{"--source", "sqs", "--alertmanager-url", "http://am:9093"}, []string{`--source "sqs" is unknown`}},
		{"kafka without brokers", []string{"--source", "kafka", "--alertmanager-url", "http://am:9093"}, []string{"--kafka-brokers is required"}},
		{"kafka bad start offset", []string{"--source", "kafka", "--kafka-brokers", "k:9092", "--kafka-start-offset", "middle", "--alertmanager-url", "http://am:9093"}, []string{"--kafka-start-offset"}},
		{"ttl shorter than two resends", []string{"--alertmanager-url", "http://am:9093", "--resend-interval", "10m", "--alert-ttl", "15m"}, []string{"less than twice --resend-interval"}},
		{"reserved and bad labels", []string{"--alertmanager-url", "http://am:9093", "--alert-label", "severity=x", "--alert-label", "1bad=x", "--alert-label", "empty="}, []string{"label names are letters", "has an empty value", "sets alertname, node, cluster and severity"}},
		{"bad durable", []string{"--alertmanager-url", "http://am:9093", "--nats-durable", "a.b"}, []string{"--nats-durable"}},
		{"token twice", []string{"--alertmanager-url", "http://am:9093", "--alertmanager-bearer-token", "x", "--alertmanager-bearer-token-file", "/etc/hostname"}, []string{"both set"}},
		{"bad prefix", []string{"--alertmanager-url", "http://am:9093", "--nats-subject-prefix", "a.>"}, []string{"--nats-subject-prefix"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			c.AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			errs := c.Validate()
			if len(errs) != len(tt.want) {
				t.Fatalf("errors %v, want %d", errs, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to say %q", i, errs[i], w)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := DefaultConfig()
	if c.ResendInterval != time.Minute || c.AlertTTL != time.Hour || Subject(c.NATSSubjectPrefix) != "kubestream.imagestorage.>" || Topic(c.KafkaTopicPrefix) != "kubestream.imagestorage" {
		t.Fatalf("defaults %+v", c)
	}
}
