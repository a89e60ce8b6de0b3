package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/config"
	"github.com/kubestream/kubestream/pkg/natsembed"
	kafkasink "github.com/kubestream/kubestream/pkg/sink/kafka"
	natssink "github.com/kubestream/kubestream/pkg/sink/nats"
	"github.com/kubestream/kubestream/pkg/tail"
)

func init() {
	register("tail", command{summary: "print the events on the bus (NATS/JetStream or Kafka)", run: runTail})
}

func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("kubestream tail", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "YAML file of settings: keys are flag names")
	var (
		source      = fs.String("source", "", "nats or kafka (default: kafka when --kafka-brokers is given, else nats)")
		output      = fs.String("output", "", "json (protojson lines) or text (one short line per event); default text on a terminal, json otherwise")
		kindList    = fs.String("kind", "", "only these kinds, comma-separated: pods, nodes, deployments, configmaps, imagestorage")
		nsList      = fs.String("namespace", "", "only these namespaces, comma-separated")
		opList      = fs.String("op", "", "only these operations, comma-separated: created, updated, deleted, snapshot, replay")
		fromStart   = fs.Bool("from-start", false, "read the stream or topics from the beginning (default: only new events)")
		limit       = fs.Int("limit", 0, "exit after printing this many events; 0 runs until interrupted")
		natsStream  = fs.String("nats-stream", embeddedStream, "JetStream stream to read; empty reads core NATS subjects (live only)")
		natsPrefix  = fs.String("nats-subject-prefix", natssink.DefaultSubjectPrefix, "subject prefix the producer uses (core NATS)")
		embDir      = fs.String("nats-embedded-dir", natsembed.DefaultDir(), "data directory of the embedded server of 'kubestream run', to find its URL when --nats-url is not given")
		topicPrefix = fs.String("kafka-topic-prefix", "kubestream", "read every topic <prefix>.*")
		topic       = fs.String("kafka-topic", "", "read this one topic instead")
		conn        natssink.ConnOptions
		kafkaTLS    kafkasink.TLSOptions
		kafkaSASL   kafkasink.SASLOptions
		brokers     = new([]string)
	)
	conn.AddFlags(fs)
	kafkasink.AddConnFlags(fs, brokers, &kafkaTLS, &kafkaSASL)
	addLogFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: kubestream tail [flags]\n\nPrints kubestream events from the bus. With no flags it reads the embedded NATS\nserver that 'kubestream run' starts by default.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "kubestream tail: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kubestream tail: unexpected argument %q (flags start with --)\n", fs.Arg(0))
		return 2
	}
	var problems []string
	filter, err := tail.ParseFilter(*kindList, *nsList, *opList)
	if err != nil {
		problems = append(problems, err.Error())
	}
	format := tail.JSON
	if *output == "" {
		if isTerminal(stdout) {
			format = tail.Text
		}
	} else if format, err = tail.ParseFormat(*output); err != nil {
		problems = append(problems, err.Error())
	}
	if *limit < 0 {
		problems = append(problems, "--limit must not be negative")
	}
	var src tail.Source
	kafkaSource := func() tail.Source {
		errs := kafkasink.ValidateConn(*brokers, kafkaTLS, kafkaSASL)
		for _, err := range errs {
			problems = append(problems, err.Error())
		}
		var dialer *kafkago.Dialer
		if len(errs) == 0 {
			var err error
			if dialer, err = kafkasink.NewDialer(10*time.Second, kafkaTLS, kafkaSASL); err != nil {
				problems = append(problems, err.Error())
			}
		}
		return &tail.Kafka{Brokers: *brokers, Topic: *topic, TopicPrefix: *topicPrefix, FromStart: *fromStart, Dialer: dialer}
	}
	switch strings.ToLower(*source) {
	case "kafka":
		if len(*brokers) == 0 {
			problems = append(problems, "--source kafka needs --kafka-brokers host:9092")
		}
		src = kafkaSource()
	case "":
		if len(*brokers) > 0 {
			src = kafkaSource()
			break
		}
		fallthrough
	case "nats":
		for _, err := range conn.Validate() {
			problems = append(problems, err.Error())
		}
		if err := natssink.ValidatePrefix(*natsPrefix); err != nil {
			problems = append(problems, "--nats-subject-prefix: "+err.Error())
		}
		if len(conn.URLs) == 0 {
			if u := natsembed.RunningURL(*embDir); u != "" {
				conn.URLs = []string{u}
			}
		}
		src = &tail.NATS{Conn: conn, Stream: *natsStream, FallbackToCore: !fs.Changed("nats-stream"), SubjectPrefix: *natsPrefix, FromStart: *fromStart}
	default:
		problems = append(problems, fmt.Sprintf("--source %q is unknown: use nats or kafka", *source))
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "kubestream tail: %s\n", p)
		}
		return 2
	}
	ctx = klog.NewContext(ctx, klog.Background())
	err = tail.Run(ctx, src, tail.Options{Filter: filter, Format: format, Limit: *limit, Out: stdout})
	klog.Flush()
	if err != nil {
		fmt.Fprintf(stderr, "kubestream tail: %v\n", err)
		return 1
	}
	return 0
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
