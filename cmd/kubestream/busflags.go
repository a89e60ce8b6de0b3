package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubestream/kubestream/pkg/natsembed"
	kafkasink "github.com/kubestream/kubestream/pkg/sink/kafka"
	natssink "github.com/kubestream/kubestream/pkg/sink/nats"
)

// busFlags are the flags of the commands that read the bus (tail, get):
// which broker, and how to reach it.
type busFlags struct {
	fs          *pflag.FlagSet
	source      *string
	natsStream  *string
	natsPrefix  *string
	embDir      *string
	brokers     *[]string
	topicPrefix *string
	topic       *string
	conn        natssink.ConnOptions
	kafkaTLS    kafkasink.TLSOptions
	kafkaSASL   kafkasink.SASLOptions
}

func addBusFlags(fs *pflag.FlagSet) *busFlags {
	b := &busFlags{fs: fs,
		source:      fs.String("source", "", "nats or kafka (default: kafka when --kafka-brokers is given, else nats)"),
		natsStream:  fs.String("nats-stream", embeddedStream, "JetStream stream to read; empty reads core NATS subjects (live only)"),
		natsPrefix:  fs.String("nats-subject-prefix", natssink.DefaultSubjectPrefix, "subject prefix the producer uses (core NATS)"),
		embDir:      fs.String("nats-embedded-dir", natsembed.DefaultDir(), "data directory of the embedded server of 'kubestream run', to find its URL when --nats-url is not given"),
		brokers:     new([]string),
		topicPrefix: fs.String("kafka-topic-prefix", "kubestream", "read every topic <prefix>.* (except <prefix>.state)"),
		topic:       fs.String("kafka-topic", "", "read this one topic instead"),
	}
	b.conn.AddFlags(fs)
	// Brokers, TLS and SASL are spelled as run spells them.
	kafkasink.AddConnFlags(fs, b.brokers, &b.kafkaTLS, &b.kafkaSASL)
	return b
}

// bus is where the flags say to read.
type bus struct {
	kafka bool
	// Kafka
	brokers     []string
	topic       string
	topicPrefix string
	kafkaTLS    kafkasink.TLSOptions
	kafkaSASL   kafkasink.SASLOptions
	// NATS
	conn       natssink.ConnOptions
	stream     string
	streamSet  bool // --nats-stream given: no fallback to core NATS
	natsPrefix string
}

// resolve validates the flags and says which bus to read, or what is wrong.
func (b *busFlags) resolve() (bus, []string) {
	var problems []string
	out := bus{brokers: *b.brokers, topic: *b.topic, topicPrefix: *b.topicPrefix, kafkaTLS: b.kafkaTLS, kafkaSASL: b.kafkaSASL,
		conn: b.conn, stream: *b.natsStream, streamSet: b.fs.Changed("nats-stream"), natsPrefix: *b.natsPrefix}
	switch strings.ToLower(*b.source) {
	case "kafka":
		if len(out.brokers) == 0 {
			problems = append(problems, "--source kafka needs --kafka-brokers host:9092")
		}
		out.kafka = true
	case "":
		if len(out.brokers) > 0 {
			out.kafka = true
			break
		}
		fallthrough
	case "nats":
		for _, err := range out.conn.Validate() {
			problems = append(problems, err.Error())
		}
		if err := natssink.ValidatePrefix(out.natsPrefix); err != nil {
			problems = append(problems, "--nats-subject-prefix: "+err.Error())
		}
		if len(out.conn.URLs) == 0 {
			if u := natsembed.RunningURL(*b.embDir); u != "" {
				out.conn.URLs = []string{u}
			}
		}
	default:
		problems = append(problems, fmt.Sprintf("--source %q is unknown: use nats or kafka", *b.source))
	}
	if out.kafka {
		errs := kafkasink.ValidateConn(out.brokers, out.kafkaTLS, out.kafkaSASL)
		for _, err := range errs {
			problems = append(problems, err.Error())
		}
		if len(errs) == 0 {
			if _, err := kafkasink.NewDialer(10*time.Second, out.kafkaTLS, out.kafkaSASL); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	return out, problems
}
