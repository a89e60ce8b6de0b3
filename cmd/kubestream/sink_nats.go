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

// natsSinkOptions are the flags of the nats sink and its embedded server.
type natsSinkOptions struct {
	Conn         natssink.ConnOptions
	Sink         natssink.Options
	EmbeddedDir  string
	EmbeddedPort int

	// fs tells flags given from defaults (Changed), for the checks that
	// depend on whether a flag was set at all.
	fs *pflag.FlagSet
}

func newNATSSinkOptions() natsSinkOptions {
	return natsSinkOptions{
		Sink:         natssink.Options{SubjectPrefix: natssink.DefaultSubjectPrefix, MaxPendingAcks: natssink.DefaultMaxPendingAcks, AckTimeout: natssink.DefaultAckTimeout, StateBucket: natssink.DefaultStateBucket},
		EmbeddedDir:  natsembed.DefaultDir(),
		EmbeddedPort: natsembed.DefaultPort,
	}
}

// AddFlags registers the sink and embedded-server flags. The connection
// flags are natssink.ConnOptions', shared with tail and alert-bridge.
func (f *natsSinkOptions) AddFlags(fs *pflag.FlagSet) {
	f.fs = fs
	f.Conn.AddFlags(fs)
	f.Sink.Stream.AddFlags(fs)
	fs.StringVar(&f.Sink.SubjectPrefix, "nats-subject-prefix", f.Sink.SubjectPrefix, "first subject token(s): events go to <prefix>.<kind>.<namespace>.<name>")
	fs.IntVar(&f.Sink.MaxPendingAcks, "nats-max-pending-acks", f.Sink.MaxPendingAcks, "JetStream publishes awaiting their acknowledgement, at most; more wait")
	fs.DurationVar(&f.Sink.AckTimeout, "nats-ack-timeout", f.Sink.AckTimeout, "how long to wait for a JetStream acknowledgement (or a core NATS flush) before retrying")
	fs.StringVar(&f.Sink.StateBucket, "nats-state-bucket", f.Sink.StateBucket, "JetStream key-value bucket holding the resume state (the last acknowledged position of every object), created when missing; core NATS (no stream) keeps no state")
	fs.StringVar(&f.EmbeddedDir, "nats-embedded-dir", f.EmbeddedDir, "data directory of the embedded NATS server, used when --nats-url is not given")
	fs.IntVar(&f.EmbeddedPort, "nats-embedded-port", f.EmbeddedPort, "loopback port of the embedded NATS server; when the default is taken a free port is used")
}

func (f *natsSinkOptions) changed(name string) bool { return f.fs != nil && f.fs.Changed(name) }

func (f *natsSinkOptions) embedded() bool { return len(f.Conn.URLs) == 0 }

// sinkOptions are the sink's options as used: the embedded server always
// has its stream, created.
func (f *natsSinkOptions) sinkOptions() natssink.Options {
	opts := f.Sink
	if f.embedded() {
		if opts.Stream.Name == "" {
			opts.Stream.Name = embeddedStream
		}
		opts.Stream.Create = true
	}
	return opts
}

// Validate reports every problem of the nats sink's flags.
func (f *natsSinkOptions) Validate() []error {
	var problems []error
	if f.embedded() {
		for _, name := range []string{"nats-token", "nats-token-file", "nats-user", "nats-password", "nats-password-file",
			"nats-nkey-seed-file", "nats-creds-file", "nats-tls", "nats-tls-ca-file", "nats-tls-cert-file", "nats-tls-key-file",
			"nats-tls-server-name", "nats-tls-insecure-skip-verify", "nats-tls-ca", "nats-tls-cert", "nats-tls-key"} {
			if f.changed(name) {
				problems = append(problems, fmt.Errorf("--%s needs --nats-url: without it kubestream runs its own NATS server on loopback, without authentication", name))
			}
		}
	} else if f.changed("nats-embedded-dir") || f.changed("nats-embedded-port") {
		problems = append(problems, errors.New("--nats-embedded-dir and --nats-embedded-port apply only without --nats-url"))
	}
	if f.EmbeddedPort < 0 || f.EmbeddedPort > 65535 {
		problems = append(problems, fmt.Errorf("--nats-embedded-port %d is not a port: use 1-65535, or 0 for any free port", f.EmbeddedPort))
	}
	problems = append(problems, f.Conn.Validate()...)
	opts := f.sinkOptions()
	return append(problems, opts.Validate()...)
}

// open connects to the servers given, else starts the embedded one.
func (f *natsSinkOptions) open(ctx context.Context, _ []string) (app.Sink, error) {
	logger := klog.FromContext(ctx)
	opts := f.sinkOptions()
	if !f.embedded() {
		sink, err := natssink.Open(ctx, f.Conn, opts)
		if err != nil {
			return nil, err
		}
		if sink.JetStream() {
			logger.Info("Publishing to JetStream", "urls", f.Conn.URLs, "stream", opts.Stream.Name, "subjects", opts.SubjectPrefix+".>")
		} else {
			logger.Info("Publishing on core NATS: no broker acknowledgements, subscribers that are not connected miss events; name a JetStream stream with --nats-stream for at-least-once",
				"urls", f.Conn.URLs, "subjects", opts.SubjectPrefix+".>")
		}
		return sink, nil
	}

	srv, err := natsembed.Start(natsembed.Options{Dir: f.EmbeddedDir, Port: f.EmbeddedPort, FallbackPort: !f.changed("nats-embedded-port"), Logger: &logger})
	if errors.Is(err, natsembed.ErrPortInUse) {
		return nil, app.BadInput(err)
	}
	if err != nil {
		return nil, err
	}
	conn := f.Conn
	conn.URLs = []string{srv.URL()}
	sink, err := natssink.Open(ctx, conn, opts)
	if err != nil {
		srv.Shutdown()
		return nil, err
	}
	if srv.Fallback {
		logger.Info("Embedded NATS port taken, listening on another", "wanted", f.EmbeddedPort, "url", srv.URL())
	}
	logger.Info("Embedded NATS server started: read the events with the consume command",
		"url", srv.URL(), "stream", opts.Stream.Name, "subjects", opts.SubjectPrefix+".>", "dataDir", srv.Dir(),
		"consume", tailCommand(f.EmbeddedDir, opts.Stream.Name, opts.SubjectPrefix))
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
