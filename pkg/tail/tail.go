// Package tail reads kubestream events back from the bus (JetStream streams,
// core NATS subjects or Kafka topics), decodes them and prints them as JSON
// lines or short human lines: `kubestream tail`.
package tail

import (
	"context"
	"errors"
	"io"

	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/event"
)

// Message is one record read from the bus.
type Message struct {
	// Where it came from: a subject, or topic/partition@offset.
	Origin      string
	ContentType string
	Data        []byte
}

// Source delivers messages to handle, in the order the bus holds them per
// object, until ctx ends or handle returns an error.
type Source interface {
	Run(ctx context.Context, handle func(Message) error) error
}

// Options configure Run.
type Options struct {
	Filter Filter
	Format Format
	// Limit stops after this many printed events; 0 runs until ctx ends.
	Limit int
	Out   io.Writer
}

// errLimit stops a source once Limit events were printed.
var errLimit = errors.New("limit reached")

// Run prints the events src delivers. It returns nil when ctx ended or the
// limit was reached.
func Run(ctx context.Context, src Source, opts Options) error {
	logger := klog.FromContext(ctx)
	pr := NewPrinter(opts.Out, opts.Format)
	defer pr.Flush()
	// Kafka carries a copy of each replay marker and heartbeat on every
	// partition: print one. The set is small: a few markers per replay
	// round, a heartbeat per kind and interval.
	markers := map[string]bool{}
	printed := 0
	err := src.Run(ctx, func(m Message) error {
		ev, err := event.DecodeMessage(m.ContentType, m.Data)
		if err != nil {
			logger.Error(err, "Skipping message that is not a kubestream event", "origin", m.Origin)
			return nil
		}
		if isMarker(ev) {
			if markers[ev.GetId()] {
				return nil
			}
			if len(markers) > 1024 {
				clear(markers)
			}
			markers[ev.GetId()] = true
		}
		if !opts.Filter.Match(ev) {
			return nil
		}
		if err := pr.Print(ev); err != nil {
			return err
		}
		printed++
		if opts.Limit > 0 && printed >= opts.Limit {
			return errLimit
		}
		// Flush per event: tail is for watching, lines must appear at once.
		return pr.Flush()
	})
	if errors.Is(err, errLimit) || (err != nil && ctx.Err() != nil) {
		return nil
	}
	return err
}

func isMarker(ev *kubestreamv1.Event) bool {
	op := ev.GetOperation()
	return op == kubestreamv1.Operation_OPERATION_REPLAY_BEGIN || op == kubestreamv1.Operation_OPERATION_REPLAY_END ||
		op == kubestreamv1.Operation_OPERATION_HEARTBEAT
}
