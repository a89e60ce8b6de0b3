package alertbridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	kafkago "github.com/segmentio/kafka-go"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/kinds"
)

// Handler processes one message; nil means it may be acknowledged. progress
// tells the broker the message is still being worked on (nil when the
// broker has no such notion). Bridge.Handle is one.
type Handler func(ctx context.Context, data []byte, progress func()) error

// Source delivers messages one at a time, in order, and acknowledges each
// only after the handler returned nil for it. Run returns nil when ctx ends.
type Source interface {
	Run(ctx context.Context, handle Handler) error
}

// DefaultPrefix is the subject and topic prefix kubestream's sinks use.
const DefaultPrefix = "kubestream"

// DefaultConsumerName names the JetStream durable consumer and the Kafka
// consumer group.
const DefaultConsumerName = "kubestream-alert-bridge"

// Subject returns the NATS subject filter of image-storage events:
// <prefix>.imagestorage.> (one subject per node below it).
func Subject(prefix string) string { return prefix + "." + kinds.ImageStorage + ".>" }

// Topic returns the Kafka topic of image-storage events: <prefix>.imagestorage.
func Topic(prefix string) string { return prefix + "." + kinds.ImageStorage }

// JetStreamSource reads image-storage events through a durable pull
// consumer, one message in flight (MaxAckPending 1), so events of a node
// are handled in the order they were published and a message is acked only
// after Alertmanager accepted its alerts.
type JetStreamSource struct {
	Conn *nats.Conn
	// Stream holding the events; empty looks it up by subject.
	Stream string
	// Durable consumer name; it remembers the position across restarts.
	Durable string
	// Subject filter, usually Subject(prefix).
	Subject string
	// AckWait is how long the server waits for an ack before redelivering;
	// the bridge extends it (InProgress) while it retries Alertmanager.
	// Default 30s.
	AckWait time.Duration
}

// Run consumes until ctx ends. A consumer created for the first time starts
// with the last event of every node (DeliverLastPerSubject): the current
// image-storage state, without replaying history.
func (s *JetStreamSource) Run(ctx context.Context, handle Handler) error {
	logger := klog.FromContext(ctx)
	js, err := jetstream.New(s.Conn)
	if err != nil {
		return fmt.Errorf("open JetStream: %w", err)
	}
	stream := s.Stream
	if stream == "" {
		stream, err = js.StreamNameBySubject(ctx, s.Subject)
		if err != nil {
			return fmt.Errorf("find the JetStream stream of %s: %w (pass --nats-stream, or check that kubestream publishes to a stream with --nats-stream)", s.Subject, err)
		}
	}
	ackWait := s.AckWait
	if ackWait <= 0 {
		ackWait = 30 * time.Second
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       s.Durable,
		Description:   "kubestream alert-bridge: image-storage events to Alertmanager",
		FilterSubject: s.Subject,
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: 1,
	})
	if err != nil {
		return fmt.Errorf("create durable consumer %s on stream %s: %w", s.Durable, stream, err)
	}
	logger.Info("Consuming image-storage events", "stream", stream, "consumer", s.Durable, "subject", s.Subject)
	it, err := cons.Messages(jetstream.PullMaxMessages(1))
	if err != nil {
		return fmt.Errorf("consume from %s/%s: %w", stream, s.Durable, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("next message from %s/%s: %w", stream, s.Durable, err)
		}
		if err := handle(ctx, msg.Data(), func() { _ = msg.InProgress() }); err != nil {
			if ctx.Err() != nil {
				return nil // unacked: redelivered to the next run
			}
			return err
		}
		// Wait for the server to confirm the ack, so "handled" and "acked"
		// cannot drift apart silently.
		if err := msg.DoubleAck(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			logger.Info("Ack not confirmed; the message will be redelivered", "subject", msg.Subject(), "err", err.Error())
		}
	}
}

// CoreNATSSource reads image-storage events from core NATS, for a
// kubestream that publishes without JetStream. Core NATS has no acks: events
// published while the bridge is down are lost to it, and it relies on
// replay rounds to learn the current state again.
type CoreNATSSource struct {
	Conn    *nats.Conn
	Subject string
	// Queue group, so several bridges share the work.
	Queue string
}

// Run consumes until ctx ends.
func (s *CoreNATSSource) Run(ctx context.Context, handle Handler) error {
	sub, err := s.Conn.QueueSubscribeSync(s.Subject, s.Queue)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", s.Subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// Bounded: a slow Alertmanager makes the server drop messages for this
	// subscriber rather than the bridge grow without limit.
	if err := sub.SetPendingLimits(4096, 64<<20); err != nil {
		return fmt.Errorf("limit pending messages on %s: %w", s.Subject, err)
	}
	klog.FromContext(ctx).Info("Consuming image-storage events from core NATS (no acknowledgements)", "subject", s.Subject, "queue", s.Queue)
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("next message on %s: %w", s.Subject, err)
		}
		if err := handle(ctx, msg.Data, nil); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// KafkaSource reads image-storage events with a consumer group and commits
// each offset synchronously after its message was handled. Events of one
// node share a key, so a partition, so they are handled in order.
type KafkaSource struct {
	Brokers []string
	Topic   string
	Group   string
	// StartOffset for a group without committed offsets: kafkago.FirstOffset
	// (default; on a compacted topic, the latest event of every node) or
	// kafkago.LastOffset.
	StartOffset int64
	Dialer      *kafkago.Dialer
}

// Run consumes until ctx ends.
func (s *KafkaSource) Run(ctx context.Context, handle Handler) error {
	logger := klog.FromContext(ctx)
	start := s.StartOffset
	if start == 0 {
		start = kafkago.FirstOffset
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:        s.Brokers,
		GroupID:        s.Group,
		Topic:          s.Topic,
		StartOffset:    start,
		CommitInterval: 0, // commit synchronously, after handling
		MaxWait:        time.Second,
		Dialer:         s.Dialer,
		ErrorLogger: kafkago.LoggerFunc(func(msg string, args ...any) {
			logger.Info("Kafka reader error", "detail", fmt.Sprintf(msg, args...))
		}),
	})
	defer r.Close()
	logger.Info("Consuming image-storage events", "topic", s.Topic, "group", s.Group, "brokers", s.Brokers)
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read from topic %s: %w", s.Topic, err)
		}
		if err := handle(ctx, m.Value, nil); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("commit offset %d of %s/%d: %w", m.Offset, m.Topic, m.Partition, err)
		}
	}
}
