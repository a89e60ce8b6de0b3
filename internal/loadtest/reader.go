package loadtest

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/natsembed"
	natssink "github.com/kubestream/kubestream/pkg/sink/nats"
	"github.com/kubestream/kubestream/pkg/tail"
)

// podsTopic is the Kafka topic of kubestream's pod events.
const podsTopic = "kubestream.pods"

// embeddedStream is the JetStream stream of kubestream's embedded NATS
// server (cmd/kubestream's embeddedStream, tail's default --nats-stream).
const embeddedStream = "KUBESTREAM"

// kafkaSource reads the pods topic as `kubestream tail --kafka-brokers ...
// --kafka-topic kubestream.pods` does: from each partition's end.
func kafkaSource(brokers []string) func() (tail.Source, error) {
	return func() (tail.Source, error) {
		return &tail.Kafka{Brokers: brokers, Topic: podsTopic}, nil
	}
}

// natsSource reads the embedded server's stream as `kubestream tail
// --nats-embedded-dir dir` does: new messages only, the server found by
// the URL file kubestream writes in dir (so call it once kubestream
// serves).
func natsSource(dir string) func() (tail.Source, error) {
	return func() (tail.Source, error) {
		url := natsembed.RunningURL(dir)
		if url == "" {
			return nil, fmt.Errorf("no embedded NATS server's URL in %s", dir)
		}
		return &tail.NATS{
			Conn:           natssink.ConnOptions{URLs: []string{url}, Name: "kubestream-loadtest"},
			Stream:         embeddedStream,
			FallbackToCore: true,
			SubjectPrefix:  natssink.DefaultSubjectPrefix,
		}, nil
	}
}

// brokerReader records the events a broker source hands over, in the
// harness's process: no rendering to JSON and parsing back, so the latency
// measured is kubestream's and the broker's, not a reader process's.
type brokerReader struct {
	rec *Recorder
	// markers read, by id: Kafka carries a copy of each replay marker and
	// heartbeat on every partition, and one is recorded, as `kubestream
	// tail` prints one.
	markers map[string]bool
	// last is when the last message was handed over (unix nanoseconds).
	last atomic.Int64
}

func newBrokerReader(rec *Recorder) *brokerReader {
	b := &brokerReader{rec: rec, markers: map[string]bool{}}
	b.last.Store(time.Now().UnixNano())
	return b
}

// run reads src until ctx ends; an error of the source before that is
// the Recorder's error.
func (b *brokerReader) run(ctx context.Context, src tail.Source) {
	if err := src.Run(ctx, b.handle); err != nil && ctx.Err() == nil {
		b.rec.fail(fmt.Errorf("broker reader: %w", err))
	}
}

// handle records one message, stamped when it is handed over. A message
// that is not an event is an error (Err), and reading goes on.
func (b *brokerReader) handle(m tail.Message) error {
	at := b.rec.now()
	b.last.Store(at.UnixNano())
	ev, err := event.DecodeMessage(m.ContentType, m.Data)
	if err != nil {
		b.rec.fail(fmt.Errorf("message %s is not an event: %w", m.Origin, err))
		return nil
	}
	switch ev.GetOperation() {
	case kubestreamv1.Operation_OPERATION_REPLAY_BEGIN, kubestreamv1.Operation_OPERATION_REPLAY_END, kubestreamv1.Operation_OPERATION_HEARTBEAT:
		if b.markers[ev.GetId()] {
			return nil
		}
		b.markers[ev.GetId()] = true
	}
	b.rec.Event(at, ev)
	return nil
}

// idle is how long no message was handed over.
func (b *brokerReader) idle() time.Duration { return time.Since(time.Unix(0, b.last.Load())) }
