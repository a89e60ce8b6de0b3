package consumer

import (
	"context"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/event"
)

// Record is one event read from the bus, or news about a stream's
// backlog (Event nil, Progress set).
type Record struct {
	// Stream names the ordered stream the event belongs to: "topic/partition"
	// on Kafka, the stream name on JetStream. The contract applies per stream.
	Stream string
	// Origin says where exactly it was read: topic/partition@offset, or
	// stream:sequence subject.
	Origin   string
	Event    *kubestreamv1.Event
	Progress Progress
}

// Progress is what a reader knows about a stream's backlog: the messages
// it held when the reader started.
type Progress int

const (
	// NoProgress: the record is an event.
	NoProgress Progress = iota
	// Backlog: the reader will read this stream's backlog; a Store is not
	// synced before it was read (Caught up).
	Backlog
	// CaughtUp: the stream's backlog has been delivered.
	CaughtUp
)

// Source reads records and calls apply for each, one at a time and in
// order per stream, acknowledging a record (offset commit, JetStream ack)
// only after apply returned nil. An error from apply stops the source
// without acknowledging that record.
type Source interface {
	Run(ctx context.Context, apply func(Record) error) error
}

// Run reads src into store until ctx ends (it then returns nil) or src
// stops: at the end of the bus for a source told to stop there, or with
// an error.
func Run(ctx context.Context, src Source, store *Store) error {
	err := src.Run(ctx, func(r Record) error {
		switch r.Progress {
		case Backlog:
			store.Expect(r.Stream)
		case CaughtUp:
			store.CaughtUp(r.Stream)
		default:
			store.Apply(r.Stream, r.Event)
		}
		return nil
	})
	if err != nil && ctx.Err() != nil {
		return nil
	}
	return err
}

// Decode reads a message body as a kubestream Event: binary protobuf (the
// content-type every sink writes), or protojson when the content type says
// json.
func Decode(contentType string, data []byte) (*kubestreamv1.Event, error) {
	return event.DecodeMessage(contentType, data)
}
