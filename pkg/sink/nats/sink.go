// Package nats publishes kubestream events to NATS: to a JetStream stream
// (acknowledged, deduplicated by event id) or, without a stream, on core
// NATS (no acknowledgement: at-most-once from the broker's side).
//
// Guarantees with JetStream: an event counts as published only when its
// PubAck arrived, so the pipeline's at-least-once promise holds through
// server restarts and reconnects; every message carries Nats-Msg-Id = event
// id, so the server drops the copies that retries and replays of the same
// change produce within the stream's duplicate window. Events of one object
// are never in flight together (the pipeline's rule), so publishing a batch
// asynchronously cannot reorder them.
//
// Core NATS: a batch is confirmed by a flush (PING/PONG round trip), which
// proves the server read the messages, not that any subscriber got them.
package nats

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/pipeline"
)

// Options configure the sink.
type Options struct {
	// SubjectPrefix starts every subject. Default "kubestream".
	SubjectPrefix string
	// Stream selects JetStream; an empty Stream.Name selects core NATS.
	Stream StreamOptions
	// MaxPendingAcks bounds JetStream publishes awaiting their PubAck across
	// all workers; a publish beyond it waits for room. Default 4096.
	MaxPendingAcks int
	// AckTimeout bounds the wait for a PubAck (JetStream) or a flush (core
	// NATS); past it the event is retried. Default 10s.
	AckTimeout time.Duration
	// StateBucket is the JetStream key-value bucket of the resume state (see
	// Sink.StateStore). Default KUBESTREAM_STATE.
	StateBucket string
	// StateMarkerTTL is how long the markers of removed state entries stay
	// in the bucket. Default 15m. Not a flag: tests shorten it.
	StateMarkerTTL time.Duration
}

// Defaults.
const (
	DefaultMaxPendingAcks = 4096
	DefaultAckTimeout     = 10 * time.Second
)

func (o *Options) defaults() {
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if o.MaxPendingAcks <= 0 {
		o.MaxPendingAcks = DefaultMaxPendingAcks
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.StateBucket == "" {
		o.StateBucket = DefaultStateBucket
	}
	if o.StateMarkerTTL <= 0 {
		o.StateMarkerTTL = DefaultStateMarkerTTL
	}
}

// Validate reports every problem with the options.
func (o *Options) Validate() []error {
	var errs []error
	prefix := o.SubjectPrefix
	if prefix == "" {
		prefix = DefaultSubjectPrefix
	}
	if err := ValidatePrefix(prefix); err != nil {
		errs = append(errs, fmt.Errorf("--nats-subject-prefix: %w", err))
	}
	if o.MaxPendingAcks < 0 {
		errs = append(errs, fmt.Errorf("--nats-max-pending-acks %d is negative", o.MaxPendingAcks))
	}
	if o.AckTimeout < 0 {
		errs = append(errs, fmt.Errorf("--nats-ack-timeout %s is negative", o.AckTimeout))
	}
	if o.StateBucket != "" {
		if err := validBucket(o.StateBucket); err != nil {
			errs = append(errs, err)
		}
	}
	if o.StateMarkerTTL != 0 && o.StateMarkerTTL < time.Second {
		errs = append(errs, fmt.Errorf("state marker TTL %s is below the server's minimum of 1s", o.StateMarkerTTL))
	}
	return append(errs, o.Stream.Validate()...)
}

// ErrNotConnected is returned for events published while the connection is
// down; the pipeline retries them.
var ErrNotConnected = errors.New("not connected to NATS")

// Sink publishes events to NATS.
type Sink struct {
	nc         *nats.Conn
	js         jetstream.JetStream // nil on core NATS
	prefix     string
	ackTimeout time.Duration
	// streamMax is the stream's max_msg_size, 0 when unlimited.
	streamMax int
	ownConn   bool
	logger    klog.Logger
	// state settings: see Options and StateStore.
	stateBucket    string
	stateMarkerTTL time.Duration
	// streamReplicas are the stream's replicas (the state bucket's too).
	streamReplicas int

	trimmed atomic.Uint64
}

// New publishes over nc, which the caller keeps owning. With a stream name it
// ensures the stream (see EnsureStream) first.
func New(ctx context.Context, nc *nats.Conn, opts Options) (*Sink, error) {
	if errs := opts.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	opts.defaults()
	s := &Sink{nc: nc, prefix: opts.SubjectPrefix, ackTimeout: opts.AckTimeout, logger: klog.FromContext(ctx),
		stateBucket: opts.StateBucket, stateMarkerTTL: opts.StateMarkerTTL}
	if opts.Stream.Name == "" {
		return s, nil
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(opts.MaxPendingAcks),
		// Unresolved acks expire, so a lost reply (a server restart) turns
		// into a retry instead of a publish that never returns.
		jetstream.WithPublishAsyncTimeout(opts.AckTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("JetStream context: %w", err)
	}
	info, err := EnsureStream(ctx, js, opts.Stream, opts.SubjectPrefix)
	if err != nil {
		return nil, err
	}
	s.js = js
	s.streamReplicas = info.Config.Replicas
	if info.Config.MaxMsgSize > 0 {
		s.streamMax = int(info.Config.MaxMsgSize)
	}
	return s, nil
}

// Open connects with conn and returns a sink that closes the connection on
// Close.
func Open(ctx context.Context, conn ConnOptions, opts Options) (*Sink, error) {
	nc, err := conn.Connect(ctx)
	if err != nil {
		return nil, err
	}
	s, err := New(ctx, nc, opts)
	if err != nil {
		nc.Close()
		return nil, err
	}
	s.ownConn = true
	return s, nil
}

// JetStream reports whether the sink publishes to a stream.
func (s *Sink) JetStream() bool { return s.js != nil }

// Trimmed counts events published without some of their states because they
// were larger than the server accepts.
func (s *Sink) Trimmed() uint64 { return s.trimmed.Load() }

// Publish sends events and waits for their PubAcks (JetStream) or a flush
// (core NATS). See pipeline.Sink.
func (s *Sink) Publish(ctx context.Context, events []*kubestreamv1.Event) []error {
	if !s.nc.IsConnected() {
		// Fail fast instead of filling the reconnect buffer: the pipeline
		// keeps the events (coalescing them) and retries.
		return fill(len(events), fmt.Errorf("publish to NATS: %w (status %s)", ErrNotConnected, s.nc.Status()))
	}
	msgs := make([]*nats.Msg, len(events))
	errs := make([]error, len(events))
	for i, ev := range events {
		m, err := s.message(ev)
		if err != nil {
			errs[i] = err
			continue
		}
		msgs[i] = m
	}
	if s.js == nil {
		s.publishCore(events, msgs, errs)
	} else {
		s.publishJetStream(ctx, events, msgs, errs)
	}
	for _, err := range errs {
		if err != nil {
			return errs
		}
	}
	return nil
}

// publishJetStream publishes asynchronously and waits for every PubAck.
func (s *Sink) publishJetStream(ctx context.Context, events []*kubestreamv1.Event, msgs []*nats.Msg, errs []error) {
	futures := make([]jetstream.PubAckFuture, len(events))
	for i, m := range msgs {
		if m == nil {
			continue
		}
		f, err := s.js.PublishMsgAsync(m, jetstream.WithStallWait(s.ackTimeout))
		if err != nil {
			errs[i] = s.classify(events[i], m.Subject, err)
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = s.classify(events[i], msgs[i].Subject, err)
		case <-ctx.Done():
			errs[i] = fmt.Errorf("publish event %s: waiting for PubAck: %w", events[i].GetId(), ctx.Err())
		}
	}
}

// publishCore publishes and confirms with a flush: the server read the
// messages. Nothing confirms that a subscriber got them.
func (s *Sink) publishCore(events []*kubestreamv1.Event, msgs []*nats.Msg, errs []error) {
	sent := 0
	for i, m := range msgs {
		if m == nil {
			continue
		}
		if err := s.nc.PublishMsg(m); err != nil {
			errs[i] = s.classify(events[i], m.Subject, err)
			msgs[i] = nil
			continue
		}
		sent++
	}
	if sent == 0 {
		return
	}
	if err := s.nc.FlushTimeout(s.ackTimeout); err != nil {
		for i, m := range msgs {
			if m != nil {
				errs[i] = fmt.Errorf("flush to NATS: %w", err)
			}
		}
	}
}

// classify wraps a publish error; errors no retry can fix are permanent.
func (s *Sink) classify(ev *kubestreamv1.Event, subject string, err error) error {
	err = fmt.Errorf("publish event %s to %s: %w", ev.GetId(), subject, err)
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) || errors.Is(err, nats.ErrBadSubject) {
		return pipeline.Permanent(err)
	}
	return err
}

// message encodes ev, trimming it to what the server accepts.
func (s *Sink) message(ev *kubestreamv1.Event) (*nats.Msg, error) {
	subject := Subject(s.prefix, ev)
	h := Headers(ev)
	// Headers grow by ks-truncated when trimming: reserve room for it.
	limit := s.limit() - headerSize(h) - len(event.HeaderTruncated+": true\r\n")
	if size := proto.Size(ev); size > limit {
		trimmed := event.Trim(ev, limit)
		if trimmed == nil {
			return nil, pipeline.Permanent(fmt.Errorf("event %s (%s) is %d bytes, over the %d bytes the NATS server accepts even without object states: raise the server's max_payload", ev.GetId(), subject, size, limit))
		}
		s.trimmed.Add(1)
		s.logger.Info("Trimmed event over the NATS message size limit", "eventID", ev.GetId(), "subject", subject, "bytes", size, "limit", limit)
		ev = trimmed
		h = Headers(ev)
	}
	// proto.Size above cached the sizes: marshal without a second pass.
	data, err := proto.MarshalOptions{UseCachedSize: true}.Marshal(ev)
	if err != nil {
		return nil, pipeline.Permanent(fmt.Errorf("encode event %s: %w", ev.GetId(), err))
	}
	return &nats.Msg{Subject: subject, Header: h, Data: data}, nil
}

// limit is the largest message (headers and body) the server and stream take.
func (s *Sink) limit() int {
	limit := int(s.nc.MaxPayload())
	if s.streamMax > 0 && s.streamMax < limit {
		limit = s.streamMax
	}
	return limit
}

// headerSize is the length of h in the NATS wire format:
// "NATS/1.0\r\n" + "key: value\r\n"... + "\r\n".
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n") + 2
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n
}

func fill(n int, err error) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}

// Close waits for outstanding acks within ctx's deadline and closes the
// connection when the sink opened it.
func (s *Sink) Close(ctx context.Context) error {
	var err error
	if s.js != nil && s.js.PublishAsyncPending() > 0 {
		select {
		case <-s.js.PublishAsyncComplete():
		case <-ctx.Done():
			err = fmt.Errorf("close NATS sink: %d publishes unacknowledged: %w", s.js.PublishAsyncPending(), ctx.Err())
		}
	}
	if s.nc.IsConnected() {
		timeout := s.ackTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(dl))
		}
		if timeout > 0 {
			if ferr := s.nc.FlushTimeout(timeout); ferr != nil && err == nil {
				err = fmt.Errorf("close NATS sink: flush: %w", ferr)
			}
		}
	}
	if s.ownConn {
		s.nc.Close()
	}
	return err
}
