// Package kafka publishes kubestream events to Kafka with segmentio/kafka-go.
//
// Every event becomes one record whose value is the protobuf
// kubestream.v1.Event, whose key is the object's identity
// ("pods/default/web-0") and whose headers (ks-id, ks-op, ks-kind, ...) let
// consumers route without decoding. By default each kind has its own topic
// (<prefix>.pods, ...); Options.Topic puts everything into one.
//
// Guarantees, given the pipeline's one-event-in-flight-per-object rule:
//   - Publish returns only after every record was acknowledged by all
//     in-sync replicas (acks=all), or with one error per event.
//   - kafka-go does not retry on its own (MaxAttempts 1): the pipeline is the
//     only retry loop, so nothing is retried behind its back and a slow
//     broker does not hold Publish for ten internal attempts.
//   - Events of one object share a key, so a partition, so their order.
//   - Replay markers are written to every partition of every topic their
//     round covers, so every consumer sees the round's boundaries.
//   - An event too large for Kafka is compressed on its own, else trimmed
//     (Event.change.truncated), else failed with pipeline.Permanent; it
//     never blocks other objects.
//   - Open checks that the topics of Options.Streams exist, creating them
//     (Options.CreateTopics) or asking the broker's automatic topic
//     creation, and fails with ErrMissingTopics otherwise: a missing topic
//     stops start-up instead of freezing the stream.
package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/pipeline"
)

// ErrNoBroker is returned by Open when no broker answered.
var ErrNoBroker = errors.New("no Kafka broker answered")

// ErrMissingTopics is matched (errors.Is) by the error Open returns when
// topics of Options.Streams do not exist and could not be created, and by
// Publish's error for a topic that does not exist. The error is a
// *MissingTopicsError: one line naming the topics and the fixes. It is the
// user's to fix (create the topics, or run with --kafka-create-topics).
var ErrMissingTopics = errors.New("Kafka topics do not exist")

// MissingTopicsError names topics that do not exist and says why they were
// not created and what to do.
type MissingTopicsError struct {
	// Topics are the missing topics, sorted.
	Topics []string
	// reason follows "do not exist and": why they were not created.
	reason string
	// fix follows the colon, given "it" or "them"; nil: create them, or
	// run with --kafka-create-topics.
	fix func(them string) string
}

func (e *MissingTopicsError) Error() string {
	noun, verb, them := "topics", "do not exist", "them"
	if len(e.Topics) == 1 {
		noun, verb, them = "topic", "does not exist", "it"
	}
	fix := "create " + them + " (see docs/kafka.md), or run with --kafka-create-topics"
	if e.fix != nil {
		fix = e.fix(them)
	}
	return fmt.Sprintf("Kafka %s %s %s and %s: %s", noun, strings.Join(e.Topics, ", "), verb, e.reason, fix)
}

// Is makes errors.Is(err, ErrMissingTopics) hold.
func (e *MissingTopicsError) Is(target error) bool { return target == ErrMissingTopics }

func missingTopics(topics []string, reason string, fix func(them string) string) *MissingTopicsError {
	ts := append([]string(nil), topics...)
	sort.Strings(ts)
	return &MissingTopicsError{Topics: ts, reason: reason, fix: fix}
}

// notAutoCreated is the reason of a MissingTopicsError when the broker
// refused automatic creation; answer is the broker's error when it is
// more than "unknown topic".
func notAutoCreated(answer error) string {
	r := "the broker does not create topics automatically"
	if answer != nil && !errors.Is(answer, kafkago.UnknownTopicOrPartition) {
		r += fmt.Sprintf(" (it answered: %v)", answer)
	}
	return r
}

// AutoCreateWait bounds how long Open waits for topics the broker creates
// automatically to show up with partitions.
const AutoCreateWait = 5 * time.Second

// Sink publishes events to Kafka. It is safe for concurrent use.
type Sink struct {
	opts      Options
	addr      net.Addr
	transport *kafkago.Transport
	client    *kafkago.Client
	// producer carries every record that fits in a batch.
	producer *producer
	// alone writes one record per request without kafka-go's local size
	// check: oversized records (compressed on their own) and records whose
	// batch the broker refused, to find out which record was too large.
	alone      *kafkago.Writer
	aloneCodec kafkago.Compression

	// streamTopics are the topics of Options.Streams, checked at Open.
	streamTopics []string
	// imageStorageRequired: replay markers covering nodes must reach the
	// image-storage topic (image storage is on, or topics are created);
	// otherwise they reach it only if it exists.
	imageStorageRequired bool

	topicMu sync.Mutex // serializes topic look-ups and creation
	mu      sync.Mutex
	ready   map[string]bool // topics known to exist

	records, tombstones, markerCopies, compressed, trimmed, tooLarge atomic.Uint64
}

// Stats are the sink's counters since Open.
type Stats struct {
	// Records acknowledged, tombstones and marker copies included.
	Records uint64
	// Tombstones acknowledged.
	Tombstones uint64
	// MarkerCopies acknowledged: one per partition and replay marker.
	MarkerCopies uint64
	// Compressed counts oversized events accepted once compressed alone.
	Compressed uint64
	// Trimmed counts events published without some object states.
	Trimmed uint64
	// TooLarge counts events failed because they never fit.
	TooLarge uint64
}

// Open validates opts, checks that a broker answers (within DialTimeout,
// trying every address), checks the topics of opts.Streams (see
// Options.Streams; a missing one that cannot be created fails with
// ErrMissingTopics) and returns a ready sink.
func Open(ctx context.Context, opts Options) (*Sink, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	tlsCfg, err := opts.TLS.ClientConfig("kafka")
	if err != nil {
		return nil, err
	}
	mech, err := opts.SASL.mechanism()
	if err != nil {
		return nil, err
	}
	codec, err := parseCompression(opts.Compression)
	if err != nil {
		return nil, err
	}
	brokers := make([]string, len(opts.Brokers))
	for i, b := range opts.Brokers {
		brokers[i] = strings.TrimSpace(b)
	}
	dialer := &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}
	newTransport := func() *kafkago.Transport {
		return &kafkago.Transport{
			Dial:        dialer.DialContext,
			DialTimeout: opts.DialTimeout,
			TLS:         tlsCfg,
			SASL:        mech,
			ClientID:    opts.ClientID,
		}
	}
	if err := probe(ctx, brokers, newTransport(), opts.DialTimeout, mech != nil); err != nil {
		return nil, err
	}

	s := &Sink{opts: opts, addr: kafkago.TCP(brokers...), transport: newTransport(), ready: map[string]bool{}}
	seen := map[string]bool{}
	for _, st := range opts.Streams {
		if err := validTopic(s.topicFor(st)); err != nil {
			return nil, fmt.Errorf("topic of %s: %w: publish all kinds to one topic with --kafka-topic", st, err)
		}
		if t := s.topicFor(st); !seen[t] {
			seen[t] = true
			s.streamTopics = append(s.streamTopics, t)
		}
		if st == kinds.ImageStorage {
			s.imageStorageRequired = true
		}
	}
	if len(opts.Streams) == 0 && opts.CreateTopics {
		s.imageStorageRequired = true
	}
	s.client = &kafkago.Client{Addr: s.addr, Transport: s.transport, Timeout: opts.WriteTimeout}
	s.producer = &producer{
		client:     s.client,
		transport:  s.transport,
		addr:       s.addr,
		balancer:   &balancer{},
		codec:      codec,
		batchSize:  opts.BatchSize,
		batchBytes: opts.BatchBytes,
		// A topic that goes missing later is left to the broker's automatic
		// creation unless the sink creates topics itself (with the settings
		// given, not the broker's defaults).
		autoCreate: !opts.CreateTopics,
	}
	// Oversized records are compressed even when --kafka-compression is
	// none: zstd shrinks Kubernetes objects the most (every broker since
	// Kafka 2.1 accepts it).
	s.aloneCodec = codec
	if codec == 0 {
		s.aloneCodec = kafkago.Zstd
	}
	s.alone = &kafkago.Writer{
		Addr:         s.addr,
		Transport:    s.transport,
		Balancer:     &balancer{},
		RequiredAcks: kafkago.RequireAll,
		BatchTimeout: time.Millisecond,
		BatchSize:    1,
		// No local limit: the broker judges the compressed size.
		BatchBytes:             math.MaxInt32,
		Compression:            s.aloneCodec,
		MaxAttempts:            1,
		ReadTimeout:            opts.WriteTimeout,
		WriteTimeout:           opts.WriteTimeout,
		AllowAutoTopicCreation: !opts.CreateTopics,
	}
	if err := s.checkTopics(ctx, s.streamTopics); err != nil {
		s.transport.CloseIdleConnections()
		return nil, err
	}
	klog.FromContext(ctx).Info("Connected to Kafka", "brokers", brokers, "topics", s.describeTopics(),
		"compression", opts.Compression, "batchTimeout", opts.BatchTimeout.String(), "tls", tlsCfg != nil, "sasl", opts.SASL.Mechanism)
	return s, nil
}

// checkTopics makes sure topics exist before the first event: missing ones
// are created (CreateTopics), else left to the broker's automatic topic
// creation, waiting up to AutoCreateWait for them. It fails with a
// *MissingTopicsError when they still do not exist, naming all of them.
func (s *Sink) checkTopics(ctx context.Context, topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	md, err := s.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("look up Kafka topics %s: %w", strings.Join(topics, ", "), err)
	}
	exists := map[string]bool{}
	for _, t := range md.Topics {
		if t.Error == nil && len(t.Partitions) > 0 {
			exists[t.Name] = true
		}
	}
	var missing []string
	for _, t := range topics {
		if !exists[t] {
			missing = append(missing, t)
		}
	}
	var still []string
	var failure error
	if len(missing) > 0 && s.opts.CreateTopics {
		var reasons []string
		refused := false
		created := s.createTopics(ctx, missing)
		for _, t := range missing {
			if err := created[t]; err != nil {
				still = append(still, t)
				reasons = append(reasons, err.Error())
				var ke kafkago.Error
				refused = refused || errors.As(err, &ke)
			} else {
				exists[t] = true
			}
		}
		switch {
		case len(still) == 0:
		case refused:
			// The broker said no (policy, permissions, settings): the
			// user's to fix, like a topic nobody may create.
			failure = missingTopics(still, "the broker refused to create topics ("+strings.Join(reasons, "; ")+")",
				func(them string) string {
					return "fix the --kafka-topic-* settings or the broker's permissions, or create " + them + " (see docs/kafka.md)"
				})
		default:
			failure = errors.New(strings.Join(reasons, "; "))
		}
	} else if len(missing) > 0 {
		var answer error
		var refused bool
		still, refused, answer = s.autoCreate(ctx, missing, AutoCreateWait)
		for _, t := range missing {
			if !slices.Contains(still, t) {
				exists[t] = true
			}
		}
		switch {
		case len(still) == 0:
		case refused:
			failure = missingTopics(still, notAutoCreated(answer), nil)
		case answer != nil:
			failure = fmt.Errorf("ask the Kafka broker to create topics %s automatically: %w", strings.Join(still, ", "), answer)
		default:
			failure = missingTopics(still, fmt.Sprintf("did not appear within %s of asking the broker to create topics automatically", AutoCreateWait), nil)
		}
	}
	s.mu.Lock()
	for t := range exists {
		s.ready[t] = true
	}
	s.mu.Unlock()
	return failure
}

// autoCreate asks the broker to create topics automatically: a metadata
// request that allows it, as kafka-go's Writer and the Java producer send
// (a broker with auto.create.topics.enable, Kafka's default, creates them
// with its default settings). With wait > 0 it polls until they have
// partitions or wait passed. It returns the topics still missing; refused
// when the broker answered that it does not create them, with its answer
// (or the last request's error).
func (s *Sink) autoCreate(ctx context.Context, topics []string, wait time.Duration) (missing []string, refused bool, answer error) {
	logger := klog.FromContext(ctx)
	deadline := time.Now().Add(wait)
	missing = topics
	for {
		rctx, cancel := context.WithTimeout(ctx, s.opts.WriteTimeout)
		r, err := s.transport.RoundTrip(rctx, s.addr, &metadataAPI.Request{TopicNames: missing, AllowAutoTopicCreation: true})
		cancel()
		answer = err
		if err == nil {
			found := map[string]metadataAPI.ResponseTopic{}
			for _, t := range r.(*metadataAPI.Response).Topics {
				found[t.Name] = t
			}
			var next []string
			refused = true
			answer = nil
			for _, name := range missing {
				t, ok := found[name]
				if ok && t.ErrorCode == 0 && len(t.Partitions) > 0 {
					logger.Info("Kafka created topic automatically", "topic", name, "partitions", len(t.Partitions))
					continue
				}
				next = append(next, name)
				code := kafkago.UnknownTopicOrPartition
				if ok {
					code = kafkago.Error(t.ErrorCode)
				}
				// Unknown topic to a request allowing creation: the
				// broker does not create topics automatically. Retriable
				// errors (leader not available) mean it is creating them.
				if code == kafkago.UnknownTopicOrPartition || (code != 0 && !code.Temporary()) {
					answer = code
				} else {
					refused = false
				}
			}
			missing = next
			if len(missing) == 0 {
				return nil, false, nil
			}
			if refused {
				return missing, true, answer
			}
		}
		if ctx.Err() != nil || !time.Now().Add(200*time.Millisecond).Before(deadline) {
			return missing, false, answer
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// probe asks every broker for metadata at once and succeeds when one
// answers; the error names each address tried and why it failed.
func probe(ctx context.Context, brokers []string, tr *kafkago.Transport, timeout time.Duration, withSASL bool) error {
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	errs := make([]error, len(brokers))
	ok := make(chan struct{}, len(brokers))
	var wg sync.WaitGroup
	for i, b := range brokers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &kafkago.Client{Addr: kafkago.TCP(b), Transport: tr, Timeout: timeout}
			_, err := c.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{}})
			if err != nil {
				if withSASL && errors.Is(err, io.ErrUnexpectedEOF) {
					// Brokers hang up on failed SASL authentication.
					err = fmt.Errorf("connection closed, most likely SASL authentication failed (check --kafka-sasl-mechanism, --kafka-sasl-username and the password): %w", err)
				}
				errs[i] = err
				return
			}
			ok <- struct{}{}
			cancel() // one answer is enough
		}()
	}
	wg.Wait()
	if len(ok) > 0 {
		return nil
	}
	parts := make([]string, len(brokers))
	for i, b := range brokers {
		parts[i] = fmt.Sprintf("%s: %v", b, errs[i])
	}
	return fmt.Errorf("%w within %s; tried %s (check --kafka-brokers, that the brokers are up and reachable from here, and the --kafka-tls-* and --kafka-sasl-* settings)",
		ErrNoBroker, timeout, strings.Join(parts, "; "))
}

// EnsureStreams checks, before a kind is first published (a kind discovered
// while running), that its topics exist or can be created, as Open does for
// the streams it is given.
func (s *Sink) EnsureStreams(ctx context.Context, streams []string) error {
	var topics []string
	for _, st := range streams {
		t := s.topicFor(st)
		if err := validTopic(t); err != nil {
			return fmt.Errorf("topic of %s: %w: publish all kinds to one topic with --kafka-topic", st, err)
		}
		topics = append(topics, t)
	}
	return s.checkTopics(ctx, topics)
}

// topicFor is the topic of a resource name: <prefix>.<resource>, so
// "kubestream.pods" and, for other groups, "<prefix>.<plural>.<group>"
// ("kubestream.certificates.cert-manager.io"). Topic names allow every
// character of resource and group names, and plural resources have no
// dots: the name after the prefix splits back at its first dot.
func (s *Sink) topicFor(resource string) string {
	if s.opts.Topic != "" {
		return s.opts.Topic
	}
	return s.opts.TopicPrefix + "." + resource
}

func (s *Sink) describeTopics() string {
	if s.opts.Topic != "" {
		return s.opts.Topic
	}
	if len(s.streamTopics) > 0 {
		return strings.Join(s.streamTopics, ",")
	}
	return s.opts.TopicPrefix + ".{" + strings.Join(append(kinds.Names(kinds.All()), kinds.ImageStorage), ",") + "}"
}

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	return Stats{
		Records:      s.records.Load(),
		Tombstones:   s.tombstones.Load(),
		MarkerCopies: s.markerCopies.Load(),
		Compressed:   s.compressed.Load(),
		Trimmed:      s.trimmed.Load(),
		TooLarge:     s.tooLarge.Load(),
	}
}

// Publish writes the events and returns once Kafka acknowledged them: nil
// when all were, else one error per event (nil for those that were).
func (s *Sink) Publish(ctx context.Context, events []*kubestreamv1.Event) []error {
	errs := make([]error, len(events))
	failed := false
	fail := func(i int, err error) {
		if err != nil && errs[i] == nil {
			errs[i] = err
			failed = true
		}
	}

	recs := make([][]kafkago.Message, len(events))
	for i, ev := range events {
		var err error
		if ev.GetReplay() != nil || ev.GetHeartbeat() != nil {
			recs[i], err = s.markerRecords(ctx, ev)
		} else if recs[i], err = s.objectRecords(ev); err != nil {
			err = pipeline.Permanent(err)
		}
		fail(i, err)
	}
	if topicErrs := s.ensureTopics(ctx, recs); len(topicErrs) > 0 {
		for i, ms := range recs {
			if errs[i] == nil && len(ms) > 0 {
				fail(i, topicErrs[ms[0].Topic])
			}
		}
	}

	// Everything that fits goes in one call: one produce request per
	// partition for all of the call's events.
	var batch []kafkago.Message
	var owner []int
	var alone []int
	for i, ms := range recs {
		if errs[i] != nil {
			continue
		}
		if recordSize(&ms[0]) > s.opts.BatchBytes {
			alone = append(alone, i)
			continue
		}
		for range ms {
			owner = append(owner, i)
		}
		batch = append(batch, ms...)
	}
	if len(batch) > 0 {
		perRecord := s.producer.write(ctx, batch)
		refused := map[int]bool{}
		for j := range batch {
			var err error
			if perRecord != nil {
				err = perRecord[j]
			}
			i := owner[j]
			switch {
			case err == nil:
			case isTooLarge(err) && events[i].GetReplay() == nil:
				// The broker refused the whole batch; find out alone
				// whether this event is the one too large.
				refused[i] = true
			default:
				fail(i, s.publishError(events[i], batch[j].Topic, err))
			}
		}
		for i := range refused {
			if errs[i] == nil {
				alone = append(alone, i)
			}
		}
		sort.Ints(alone)
	}
	for _, i := range alone {
		fail(i, s.publishAlone(ctx, events[i], recs[i]))
	}
	for i, ms := range recs {
		if errs[i] == nil {
			s.count(ms)
		}
	}
	if !failed {
		return nil
	}
	return errs
}

func (s *Sink) count(ms []kafkago.Message) {
	for _, m := range ms {
		s.records.Add(1)
		switch {
		case m.Value == nil:
			s.tombstones.Add(1)
		case m.WriterData != nil:
			s.markerCopies.Add(1)
		}
	}
}

// publishError wraps a write error with context; an unknown topic makes the
// next attempt look the topic up (and create it) again.
func (s *Sink) publishError(ev *kubestreamv1.Event, topic string, err error) error {
	if errors.Is(err, kafkago.UnknownTopicOrPartition) {
		s.mu.Lock()
		delete(s.ready, topic)
		s.mu.Unlock()
	}
	return fmt.Errorf("publish event %s to Kafka topic %s: %w", ev.GetId(), topic, err)
}

// publishAlone writes the records of one event that did not fit in a batch:
// compressed alone if that fits, else with object states dropped
// (event.Trim), else it fails for good.
func (s *Sink) publishAlone(ctx context.Context, ev *kubestreamv1.Event, ms []kafkago.Message) error {
	topic := ms[0].Topic
	size := recordSize(&ms[0])
	limit := s.opts.BatchBytes
	if size <= limit || s.fitsCompressed(&ms[0]) {
		err := firstError(s.alone.WriteMessages(ctx, ms...))
		if err == nil {
			if size > limit {
				s.compressed.Add(1)
			}
			return nil
		}
		if !isTooLarge(err) {
			return s.publishError(ev, topic, err)
		}
	}
	if ev.GetChange() == nil {
		s.tooLarge.Add(1)
		return pipeline.Permanent(fmt.Errorf("event %s is %d bytes, more than Kafka accepts (--kafka-batch-bytes %d): %w", ev.GetId(), size, limit, kafkago.MessageSizeTooLarge))
	}
	// Trim to what fits uncompressed; when the broker still refuses, its
	// limit is lower than ours: drop the next state and try again.
	overhead := size - len(ms[0].Value)
	budget := min(limit, size-1) - overhead
	cur := ev
	for {
		t := event.Trim(cur, budget)
		if t == nil {
			s.tooLarge.Add(1)
			return pipeline.Permanent(fmt.Errorf("event %s is %d bytes and does not fit in Kafka's limit (--kafka-batch-bytes %d, or the topic's max.message.bytes) even without object states: %w",
				ev.GetId(), size, limit, kafkago.MessageSizeTooLarge))
		}
		tms, err := s.objectRecords(t)
		if err != nil {
			return pipeline.Permanent(err)
		}
		err = firstError(s.alone.WriteMessages(ctx, tms...))
		if err == nil {
			s.trimmed.Add(1)
			klog.FromContext(ctx).Info("Published event without object states: too large for Kafka",
				"eventID", ev.GetId(), "key", string(ms[0].Key), "topic", topic, "bytes", size, "trimmedBytes", len(tms[0].Value), "limit", limit)
			copy(ms, tms) // count what was written
			return nil
		}
		if !isTooLarge(err) {
			return s.publishError(ev, topic, err)
		}
		budget = proto.Size(t) - 1
		cur = t
	}
}

// fitsCompressed reports whether m's value, compressed with the codec the
// lone writer uses, would fit.
func (s *Sink) fitsCompressed(m *kafkago.Message) bool {
	var buf bytes.Buffer
	w := s.aloneCodec.Codec().NewWriter(&buf)
	if _, err := w.Write(m.Value); err != nil {
		return false
	}
	if err := w.Close(); err != nil {
		return false
	}
	// Batch framing and headers are not compressed away: count them whole.
	return buf.Len()+recordSize(m)-len(m.Value)+256 <= s.opts.BatchBytes
}

// recordSize is the size kafka-go counts against BatchBytes.
func recordSize(m *kafkago.Message) int {
	n := 4 + 1 + 1 + 8 + 4 + len(m.Key) + 4 + len(m.Value) + 4
	for _, h := range m.Headers {
		n += 4 + len(h.Key) + 4 + len(h.Value)
	}
	return n
}

func isTooLarge(err error) bool {
	var local kafkago.MessageTooLargeError
	return errors.Is(err, kafkago.MessageSizeTooLarge) || errors.Is(err, kafkago.RecordListTooLarge) || errors.As(err, &local)
}

// firstError unpacks kafka-go's per-record errors.
func firstError(err error) error {
	var we kafkago.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil {
				return e
			}
		}
		return nil
	}
	return err
}

// markerRecords builds a replay marker's copies, one per partition of
// each topic its round covers.
func (s *Sink) markerRecords(ctx context.Context, ev *kubestreamv1.Event) ([]kafkago.Message, error) {
	required, optional := s.markerTopics(ev)
	if errs := s.ensureTopicList(ctx, required); len(errs) > 0 {
		for _, t := range required {
			if err := errs[t]; err != nil {
				return nil, err
			}
		}
	}
	// An optional topic (image storage off) gets markers only when it
	// exists.
	md, err := s.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: append(required, optional...)})
	if err != nil {
		return nil, fmt.Errorf("look up partitions of %s for replay marker %s: %w", strings.Join(required, ", "), ev.GetId(), err)
	}
	partitions := map[string]int{}
	for _, t := range md.Topics {
		if t.Error == nil {
			partitions[t.Name] = len(t.Partitions)
		}
	}
	var use []string
	for _, t := range required {
		if partitions[t] == 0 {
			return nil, fmt.Errorf("replay marker %s: topic %s has no partitions yet", ev.GetId(), t)
		}
		use = append(use, t)
	}
	for _, t := range optional {
		if partitions[t] > 0 {
			use = append(use, t)
		}
	}
	return markerRecords(ev, use, partitions)
}

// ensureTopics makes sure the topics of recs exist (creating them when
// enabled) and returns an error per topic that does not.
func (s *Sink) ensureTopics(ctx context.Context, recs [][]kafkago.Message) map[string]error {
	var topics []string
	seen := map[string]bool{}
	for _, ms := range recs {
		for _, m := range ms {
			if !seen[m.Topic] {
				seen[m.Topic] = true
				topics = append(topics, m.Topic)
			}
		}
	}
	return s.ensureTopicList(ctx, topics)
}

func (s *Sink) ensureTopicList(ctx context.Context, topics []string) map[string]error {
	s.mu.Lock()
	var unknown []string
	for _, t := range topics {
		if !s.ready[t] {
			unknown = append(unknown, t)
		}
	}
	s.mu.Unlock()
	if len(unknown) == 0 {
		return nil
	}
	s.topicMu.Lock()
	defer s.topicMu.Unlock()
	errs := map[string]error{}
	md, err := s.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: unknown})
	if err != nil {
		for _, t := range unknown {
			errs[t] = fmt.Errorf("look up Kafka topic %s: %w", t, err)
		}
		return errs
	}
	exists := map[string]bool{}
	for _, t := range md.Topics {
		if t.Error == nil && len(t.Partitions) > 0 {
			exists[t.Name] = true
		}
	}
	var missing []string
	for _, t := range unknown {
		if !exists[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		if !s.opts.CreateTopics {
			// Ask once, without waiting: the pipeline retries.
			still, refused, answer := s.autoCreate(ctx, missing, 0)
			for _, t := range missing {
				switch {
				case !slices.Contains(still, t):
					exists[t] = true
				case refused:
					errs[t] = missingTopics([]string{t}, notAutoCreated(answer), nil)
				case answer != nil:
					errs[t] = fmt.Errorf("Kafka topic %s does not exist; asking the broker to create it automatically: %w", t, answer)
				default:
					errs[t] = missingTopics([]string{t}, "the broker has not created it automatically yet", nil)
				}
			}
		} else {
			for t, err := range s.createTopics(ctx, missing) {
				if err != nil {
					errs[t] = err
				} else {
					exists[t] = true
				}
			}
		}
	}
	s.mu.Lock()
	for t := range exists {
		s.ready[t] = true
	}
	s.mu.Unlock()
	return errs
}

// createTopics creates topics through the controller (kafka-go routes
// CreateTopics there) and returns the outcome per topic; a topic someone
// else created meanwhile counts as created.
func (s *Sink) createTopics(ctx context.Context, topics []string) map[string]error {
	return s.createTopicsWith(ctx, topics, s.opts.CleanupPolicy, false)
}

// createTopicsWith is createTopics with the given cleanup.policy; forced
// ignores a cleanup.policy in TopicConfig (the state topic is always
// compacted).
func (s *Sink) createTopicsWith(ctx context.Context, topics []string, cleanupPolicy string, forced bool) map[string]error {
	entries := []kafkago.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: cleanupPolicy}}
	for _, kv := range s.opts.TopicConfig {
		k, v, _ := strings.Cut(kv, "=")
		if k = strings.TrimSpace(k); k == "cleanup.policy" && forced {
			continue
		}
		entries = append(entries, kafkago.ConfigEntry{ConfigName: k, ConfigValue: strings.TrimSpace(v)})
	}
	req := &kafkago.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafkago.TopicConfig{
			Topic:             t,
			NumPartitions:     s.opts.Partitions,
			ReplicationFactor: s.opts.ReplicationFactor,
			ConfigEntries:     entries,
		})
	}
	out := map[string]error{}
	resp, err := s.client.CreateTopics(ctx, req)
	if err != nil {
		for _, t := range topics {
			out[t] = fmt.Errorf("create Kafka topic %s: %w", t, err)
		}
		return out
	}
	logger := klog.FromContext(ctx)
	for _, t := range topics {
		err := resp.Errors[t]
		switch {
		case err == nil:
			logger.Info("Created Kafka topic", "topic", t, "partitions", s.opts.Partitions, "replicationFactor", s.opts.ReplicationFactor, "cleanupPolicy", cleanupPolicy)
			out[t] = nil
		case errors.Is(err, kafkago.TopicAlreadyExists):
			out[t] = nil
		default:
			out[t] = fmt.Errorf("create Kafka topic %s (partitions %d, replication factor %d): %w", t, s.opts.Partitions, s.opts.ReplicationFactor, err)
		}
	}
	return out
}

// Close flushes records of oversized events still in flight (after a
// Publish gave up on its context) within ctx's deadline and closes
// connections.
func (s *Sink) Close(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		err := s.alone.Close()
		s.transport.CloseIdleConnections()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("close Kafka writer: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close Kafka writer: records in flight not flushed before the deadline: %w", ctx.Err())
	}
}
