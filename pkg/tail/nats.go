package tail

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/event"
	natssink "github.com/kubestream/kubestream/pkg/sink/nats"
)

// NATS reads a JetStream stream with an ordered consumer (nothing is left
// behind on the server: the consumer is ephemeral), or subscribes to core
// NATS subjects.
type NATS struct {
	Conn natssink.ConnOptions
	// Stream to read; empty subscribes to <SubjectPrefix>.> on core NATS.
	Stream string
	// FallbackToCore subscribes on core NATS when Stream does not exist
	// (the user did not name the stream; the producer may use core NATS).
	FallbackToCore bool
	SubjectPrefix  string
	// FromStart reads the stream from its first message; otherwise only
	// messages published from now on. Core NATS has no history.
	FromStart bool
}

// Run implements Source.
func (n *NATS) Run(ctx context.Context, handle func(Message) error) error {
	logger := klog.FromContext(ctx)
	prefix := n.SubjectPrefix
	if prefix == "" {
		prefix = natssink.DefaultSubjectPrefix
	}
	nc, err := n.Conn.Connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	if n.Stream != "" {
		js, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("JetStream context: %w", err)
		}
		_, err = js.Stream(ctx, n.Stream)
		switch {
		case err == nil:
			return n.consume(ctx, js, handle)
		case (errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)) && n.FallbackToCore && !n.FromStart:
			logger.Info("No JetStream stream, subscribing on core NATS: live events only", "stream", n.Stream, "subjects", prefix+".>")
		case errors.Is(err, jetstream.ErrStreamNotFound):
			return fmt.Errorf("JetStream stream %s not found at %s: name the stream with --nats-stream, or use --nats-stream '' to read core NATS subjects (live only)", n.Stream, nc.ConnectedUrlRedacted())
		default:
			return fmt.Errorf("look up JetStream stream %s: %w", n.Stream, err)
		}
	}
	if n.FromStart {
		return errors.New("--from-start needs a JetStream stream (--nats-stream): core NATS keeps no history")
	}
	return n.subscribe(ctx, nc, prefix+".>", handle)
}

func (n *NATS) consume(ctx context.Context, js jetstream.JetStream, handle func(Message) error) error {
	policy := jetstream.DeliverNewPolicy
	if n.FromStart {
		policy = jetstream.DeliverAllPolicy
	}
	cons, err := js.OrderedConsumer(ctx, n.Stream, jetstream.OrderedConsumerConfig{DeliverPolicy: policy})
	if err != nil {
		return fmt.Errorf("consume JetStream stream %s: %w", n.Stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("consume JetStream stream %s: %w", n.Stream, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return ctx.Err()
			}
			return fmt.Errorf("read JetStream stream %s: %w", n.Stream, err)
		}
		if err := handle(Message{Origin: m.Subject(), ContentType: m.Headers().Get(event.HeaderContentType), Data: m.Data()}); err != nil {
			return err
		}
	}
}

func (n *NATS) subscribe(ctx context.Context, nc *nats.Conn, subject string, handle func(Message) error) error {
	ch := make(chan *nats.Msg, 4096)
	sub, err := nc.ChanSubscribe(subject, ch)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-ch:
			if err := handle(Message{Origin: m.Subject, ContentType: m.Header.Get(event.HeaderContentType), Data: m.Data}); err != nil {
				return err
			}
		}
	}
}
