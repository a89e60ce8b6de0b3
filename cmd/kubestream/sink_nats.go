package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/app"
	"github.com/kubestream/kubestream/pkg/natsembed"
	natssink "github.com/kubestream/kubestream/pkg/sink/nats"
)

// embeddedStream is the stream of the embedded server, the default sink.
const embeddedStream = "KUBESTREAM"

// natsFlags are the flags of the nats sink, bound by addFlags.
type natsFlags struct {
	fs       *pflag.FlagSet
	conn     natssink.ConnOptions
	opts     natssink.Options
	embDir   string
	embPort  int
	embStart bool
}

// addFlags registers the sink and embedded-server flags. tail shares the
// connection, prefix and embedded-dir flags.
func (f *natsFlags) addFlags(fs *pflag.FlagSet) {
	f.fs = fs
	f.conn.AddFlags(fs)
	f.opts.Stream.AddFlags(fs)
	fs.StringVar(&f.opts.SubjectPrefix, "nats-subject-prefix", natssink.DefaultSubjectPrefix, "first subject token(s): events go to <prefix>.<kind>.<namespace>.<name>")
	fs.IntVar(&f.opts.MaxPendingAcks, "nats-max-pending-acks", natssink.DefaultMaxPendingAcks, "JetStream publishes awaiting their acknowledgement, at most; more wait")
	fs.DurationVar(&f.opts.AckTimeout, "nats-ack-timeout", natssink.DefaultAckTimeout, "how long to wait for a JetStream acknowledgement (or a core NATS flush) before retrying")
	fs.StringVar(&f.opts.StateBucket, "nats-state-bucket", natssink.DefaultStateBucket, "JetStream key-value bucket holding the resume state (the last acknowledged position of every object), created when missing; core NATS (no stream) keeps no state")
	fs.StringVar(&f.embDir, "nats-embedded-dir", natsembed.DefaultDir(), "data directory of the embedded NATS server, used when --nats-url is not given")
	fs.IntVar(&f.embPort, "nats-embedded-port", natsembed.DefaultPort, "loopback port of the embedded NATS server; when the default is taken a free port is used")
}

var natsSinkFlags natsFlags

func init() {
	registerSink("nats", sinkFactory{
		summary:  "NATS or JetStream; without --nats-url an embedded NATS server with JetStream",
		addFlags: natsSinkFlags.addFlags,
		open:     natsSinkFlags.open,
	})
}

func (f *natsFlags) open(ctx context.Context, _ []string) (app.Sink, error) {
	logger := klog.FromContext(ctx)
	embedded := len(f.conn.URLs) == 0
	opts := f.opts
	var problems []error
	if embedded {
		for _, name := range []string{"nats-token", "nats-token-file", "nats-user", "nats-password", "nats-password-file",
			"nats-nkey-seed-file", "nats-creds-file", "nats-tls-ca", "nats-tls-cert", "nats-tls-key"} {
			if f.fs.Changed(name) {
				problems = append(problems, fmt.Errorf("--%s needs --nats-url: without it kubestream runs its own NATS server on loopback, without authentication", name))
			}
		}
		if opts.Stream.Name == "" {
			opts.Stream.Name = embeddedStream
		}
		opts.Stream.Create = true
	} else if f.fs.Changed("nats-embedded-dir") || f.fs.Changed("nats-embedded-port") {
		problems = append(problems, errors.New("--nats-embedded-dir and --nats-embedded-port apply only without --nats-url"))
	}
	problems = append(problems, f.conn.Validate()...)
	problems = append(problems, opts.Validate()...)
	if len(problems) > 0 {
		return nil, app.BadInput(errors.Join(problems...))
	}
	if !embedded {
		sink, err := natssink.Open(ctx, f.conn, opts)
		if err != nil {
			return nil, err
		}
		if sink.JetStream() {
			logger.Info("Publishing to JetStream", "urls", f.conn.URLs, "stream", opts.Stream.Name, "subjects", opts.SubjectPrefix+".>")
		} else {
			logger.Info("Publishing on core NATS: no broker acknowledgements, subscribers that are not connected miss events; name a JetStream stream with --nats-stream for at-least-once",
				"urls", f.conn.URLs, "subjects", opts.SubjectPrefix+".>")
		}
		return sink, nil
	}

	srv, err := natsembed.Start(natsembed.Options{Dir: f.embDir, Port: f.embPort, FallbackPort: !f.fs.Changed("nats-embedded-port"), Logger: &logger})
	if errors.Is(err, natsembed.ErrPortInUse) {
		return nil, app.BadInput(err)
	}
	if err != nil {
		return nil, err
	}
	conn := f.conn
	conn.URLs = []string{srv.URL()}
	sink, err := natssink.Open(ctx, conn, opts)
	if err != nil {
		srv.Shutdown()
		return nil, err
	}
	if srv.Fallback {
		logger.Info("Embedded NATS port taken, listening on another", "wanted", f.embPort, "url", srv.URL())
	}
	logger.Info("Embedded NATS server started: read the events with the consume command",
		"url", srv.URL(), "stream", opts.Stream.Name, "subjects", opts.SubjectPrefix+".>", "dataDir", srv.Dir(),
		"consume", tailCommand(f.embDir, opts.Stream.Name, opts.SubjectPrefix))
	return &embeddedSink{Sink: sink, srv: srv}, nil
}

// tailCommand is the exact command that reads what the embedded server
// holds; defaults are left out.
func tailCommand(dir, stream, prefix string) string {
	cmd := []string{"kubestream", "tail"}
	if dir != natsembed.DefaultDir() {
		cmd = append(cmd, "--nats-embedded-dir", shellQuote(dir))
	}
	if stream != embeddedStream {
		cmd = append(cmd, "--nats-stream", shellQuote(stream))
	}
	if prefix != natssink.DefaultSubjectPrefix {
		cmd = append(cmd, "--nats-subject-prefix", shellQuote(prefix))
	}
	return strings.Join(cmd, " ")
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[](){}<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// embeddedSink stops the embedded server after the sink flushed.
type embeddedSink struct {
	*natssink.Sink
	srv *natsembed.Server
}

func (s *embeddedSink) Close(ctx context.Context) error {
	err := s.Sink.Close(ctx)
	s.srv.Shutdown()
	return err
}
