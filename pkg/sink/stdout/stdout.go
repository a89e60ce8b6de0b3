// Package stdout writes events as JSON lines (protojson of kubestream.v1.Event),
// one per line, for humans and pipes: kubestream run --sink stdout | jq.
package stdout

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/pipeline"
)

// Sink writes JSON lines to a writer. A batch counts as acknowledged once it
// was written and flushed.
type Sink struct {
	mu  sync.Mutex
	w   *bufio.Writer
	buf []byte // reused between events: JSON encoding is the sink's main cost
	opt protojson.MarshalOptions
}

// New returns a sink writing to w.
func New(w io.Writer) *Sink {
	return &Sink{w: bufio.NewWriterSize(w, 64<<10)}
}

// Publish writes each event on its own line.
func (s *Sink) Publish(_ context.Context, events []*kubestreamv1.Event) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for i, ev := range events {
		b, err := s.opt.MarshalAppend(s.buf[:0], ev)
		if err != nil {
			if errs == nil {
				errs = make([]error, len(events))
			}
			errs[i] = pipeline.Permanent(fmt.Errorf("encode event %s as JSON: %w", ev.GetId(), err))
			continue
		}
		s.buf = append(b, '\n')
		s.w.Write(s.buf)
	}
	if err := s.w.Flush(); err != nil {
		out := make([]error, len(events))
		for i := range out {
			out[i] = fmt.Errorf("write to stdout: %w", err)
		}
		return out
	}
	return errs
}

// Close flushes buffered output.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Flush()
}
