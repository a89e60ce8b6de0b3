package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/config"
	kafkasink "github.com/kubestream/kubestream/pkg/sink/kafka"
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
		output    = fs.String("output", "", "json (protojson lines) or text (one short line per event); default text on a terminal, json otherwise")
		kindList  = fs.String("kind", "", "only these kinds, comma-separated: pods, nodes, deployments, configmaps, imagestorage")
		nsList    = fs.String("namespace", "", "only these namespaces, comma-separated")
		opList    = fs.String("op", "", "only these operations, comma-separated: created, updated, deleted, snapshot, replay")
		fromStart = fs.Bool("from-start", false, "read the stream or topics from the beginning (default: only new events)")
		limit     = fs.Int("limit", 0, "exit after printing this many events; 0 runs until interrupted")
		busOpts   = addBusFlags(fs)
	)
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
	b, busProblems := busOpts.resolve()
	problems = append(problems, busProblems...)
	var src tail.Source
	if b.kafka {
		dialer, _ := kafkasink.NewDialer(10*time.Second, b.kafkaTLS, b.kafkaSASL)
		src = &tail.Kafka{Brokers: b.brokers, Topic: b.topic, TopicPrefix: b.topicPrefix, FromStart: *fromStart, Dialer: dialer}
	} else {
		src = &tail.NATS{Conn: b.conn, Stream: b.stream, FallbackToCore: !b.streamSet, SubjectPrefix: b.natsPrefix, FromStart: *fromStart}
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
