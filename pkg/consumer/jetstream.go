package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/klog/v2"
)

// DefaultStream is the JetStream stream of kubestream's embedded server.
const DefaultStream = "KUBESTREAM"

// JetStream reads a kubestream JetStream stream in order, as one ordered
// stream.
//
// Without Durable it uses an ordered consumer (ephemeral: nothing stays on
// the server). With Durable it creates or resumes that durable pull
// consumer and acks each message only after its apply returned; a message
// redelivered after one with a later stream sequence was applied (an ack
// wait that expired) is acked and skipped, so order holds.
type JetStream struct {
	// Conn is a connection to the server (nats.Connect).
	Conn *nats.Conn
	// Stream is the stream's name; default DefaultStream.
	Stream string
	// Durable names a durable consumer (see the type's doc).
	Durable string
	// FilterSubject reads only these subjects ("kubestream.pods.>"); a
	// filter that leaves out replay markers (kubestream.replay.>) never
	// syncs.
	FilterSubject string
	// FromStart delivers from the stream's first message (a new durable:
	// from the first message); otherwise only new messages.
	FromStart bool
	// StopAtEnd ends Run once the messages the stream held when Run
	// started were applied.
	StopAtEnd bool
	// AckWait of a durable consumer; default 5 minutes, long enough for
	// slow handlers.
	AckWait time.Duration
}

// Run implements Source.
func (j *JetStream) Run(ctx context.Context, apply func(Record) error) error {
	if j.Conn == nil {
		return errors.New("no NATS connection: connect with nats.Connect and set JetStream.Conn")
	}
	name := j.Stream
	if name == "" {
		name = DefaultStream
	}
	js, err := jetstream.New(j.Conn)
	if err != nil {
		return fmt.Errorf("JetStream context: %w", err)
	}
	stream, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("JetStream stream %s not found at %s: start kubestream run with a JetStream sink first, or name the stream it writes", name, j.Conn.ConnectedUrlRedacted())
	}
	if err != nil {
		return fmt.Errorf("look up JetStream stream %s: %w", name, err)
	}
	// The backlog: what the stream held at the start.
	var lastSeq uint64
	if j.FromStart {
		info, err := stream.Info(ctx)
		if err != nil {
			return fmt.Errorf("JetStream stream %s info: %w", name, err)
		}
		lastSeq = info.State.LastSeq
		if info.State.Msgs == 0 {
			lastSeq = 0
		}
	}
	if lastSeq > 0 {
		if err := apply(Record{Stream: name, Progress: Backlog}); err != nil {
			return err
		}
	}
	if j.StopAtEnd && lastSeq == 0 {
		return nil
	}
	policy := jetstream.DeliverNewPolicy
	if j.FromStart {
		policy = jetstream.DeliverAllPolicy
	}
	var cons jetstream.Consumer
	if j.Durable == "" {
		cons, err = stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: policy, FilterSubjects: filters(j.FilterSubject)})
	} else {
		wait := j.AckWait
		if wait <= 0 {
			wait = 5 * time.Minute
		}
		cons, err = stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable: j.Durable, DeliverPolicy: policy, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: wait, FilterSubject: j.FilterSubject, MaxAckPending: 1024,
		})
	}
	if err != nil {
		return fmt.Errorf("consume JetStream stream %s: %w", name, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("consume JetStream stream %s: %w", name, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	logger := klog.FromContext(ctx)
	var applied uint64 // stream sequence of the last message applied
	caughtUp := lastSeq == 0
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return ctx.Err()
			}
			return fmt.Errorf("read JetStream stream %s: %w", name, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("read JetStream stream %s: %w", name, err)
		}
		seq := meta.Sequence.Stream
		if seq > applied {
			origin := fmt.Sprintf("%s:%d %s", name, seq, m.Subject())
			ev, err := Decode(m.Headers().Get("content-type"), m.Data())
			if err != nil {
				logger.Error(err, "Skipping message that is not a kubestream event", "origin", origin)
			} else if err := apply(Record{Stream: name, Origin: origin, Event: ev}); err != nil {
				return err
			}
			applied = seq
		}
		if j.Durable != "" {
			if err := m.Ack(); err != nil && ctx.Err() == nil {
				return fmt.Errorf("ack %s:%d: %w", name, seq, err)
			}
		}
		if !caughtUp && (seq >= lastSeq || meta.NumPending == 0) {
			caughtUp = true
			if err := apply(Record{Stream: name, Progress: CaughtUp}); err != nil {
				return err
			}
			if j.StopAtEnd {
				return nil
			}
		}
	}
}

func filters(subject string) []string {
	if subject == "" {
		return nil
	}
	return []string{subject}
}
