package consumer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"k8s.io/klog/v2"
)

// DefaultTopicPrefix starts the topics kubestream writes by default.
const DefaultTopicPrefix = "kubestream"

// Kafka reads kubestream's Kafka topics with segmentio/kafka-go.
//
// Without GroupID it reads every partition of the topics itself (no group,
// nothing committed): the way to fill an in-memory Store, from the start
// with FromStart, optionally stopping at the end (StopAtEnd). With GroupID
// it joins that consumer group: the group assigns partitions, and offsets
// are committed (every second) only for records whose apply returned.
type Kafka struct {
	// Brokers are the bootstrap addresses, host:9092.
	Brokers []string
	// Topics to read. Empty discovers them: every topic named
	// <TopicPrefix>.<something> on the brokers (per-kind topics, also
	// <prefix>.<resource>.<group> of custom resources), except
	// ExcludeTopics.
	Topics      []string
	TopicPrefix string
	// ExcludeTopics are left out of discovery; default <TopicPrefix>.state
	// (the compacted resume state, not events).
	ExcludeTopics []string
	// GroupID joins a consumer group (see the type's doc).
	GroupID string
	// FromStart reads from each partition's first offset (a new group:
	// from the first offset); otherwise from its end.
	FromStart bool
	// StopAtEnd ends Run once every partition was read up to the end it had
	// when Run started. Not with GroupID.
	StopAtEnd bool
	// WaitForTopics keeps looking for the topics, every second, until they
	// exist (a consumer started before kubestream first wrote); otherwise
	// Run fails at once when they are missing. Topics are found once, at
	// the start: a topic created later (a new custom resource's) is read
	// after a restart.
	WaitForTopics bool
	// Dialer connects to the brokers (TLS, SASL); nil dials plain TCP.
	Dialer *kafkago.Dialer
}

func (k *Kafka) dialer() *kafkago.Dialer {
	if k.Dialer != nil {
		return k.Dialer
	}
	return kafkago.DefaultDialer
}

func (k *Kafka) prefix() string {
	if k.TopicPrefix == "" {
		return DefaultTopicPrefix
	}
	return k.TopicPrefix
}

// Run implements Source.
func (k *Kafka) Run(ctx context.Context, apply func(Record) error) error {
	if len(k.Brokers) == 0 {
		return errors.New("no Kafka brokers: set the brokers (--kafka-brokers host:9092)")
	}
	if k.GroupID != "" && k.StopAtEnd {
		return errors.New("reading to the end and a consumer group do not go together: the group decides which partitions this reader gets")
	}
	topics, err := k.topics(ctx)
	if err != nil {
		return err
	}
	if k.GroupID != "" {
		return k.runGroup(ctx, topics, apply)
	}
	return k.runPartitions(ctx, topics, apply)
}

// topics returns Topics, or discovers them, waiting for them with
// WaitForTopics.
func (k *Kafka) topics(ctx context.Context) ([]string, error) {
	logged := false
	for {
		topics, err := k.Topics, error(nil)
		if len(topics) == 0 {
			topics, err = k.Discover(ctx)
		} else {
			err = k.exist(ctx, topics)
		}
		if err == nil || !k.WaitForTopics || ctx.Err() != nil {
			return topics, err
		}
		if !logged {
			klog.FromContext(ctx).Info("Waiting for the topics to appear", "reason", err.Error())
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// exist checks that every topic has partitions.
func (k *Kafka) exist(ctx context.Context, topics []string) error {
	parts, err := k.readPartitions(ctx)
	if err != nil {
		return err
	}
	found := map[string]bool{}
	for _, p := range parts {
		found[p.Topic] = true
	}
	var missing []string
	for _, t := range topics {
		if !found[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no Kafka topic %s on %s", strings.Join(missing, ", "), strings.Join(k.Brokers, ","))
	}
	return nil
}

// Discover lists the event topics on the brokers: <TopicPrefix>.* except
// ExcludeTopics, sorted.
func (k *Kafka) Discover(ctx context.Context) ([]string, error) {
	parts, err := k.readPartitions(ctx)
	if err != nil {
		return nil, err
	}
	exclude := map[string]bool{k.prefix() + ".state": true}
	if len(k.ExcludeTopics) > 0 {
		exclude = map[string]bool{}
		for _, t := range k.ExcludeTopics {
			exclude[t] = true
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range parts {
		if strings.HasPrefix(p.Topic, k.prefix()+".") && !exclude[p.Topic] && !seen[p.Topic] {
			seen[p.Topic] = true
			out = append(out, p.Topic)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no Kafka topic %s.* on %s yet: topics appear when kubestream run --sink kafka first writes (check the topic prefix)", k.prefix(), strings.Join(k.Brokers, ","))
	}
	sort.Strings(out)
	return out, nil
}

func (k *Kafka) readPartitions(ctx context.Context, topics ...string) ([]kafkago.Partition, error) {
	var lastErr error
	for _, b := range k.Brokers {
		conn, err := k.dialer().DialContext(ctx, "tcp", b)
		if err != nil {
			lastErr = err
			continue
		}
		parts, err := conn.ReadPartitions(topics...)
		conn.Close()
		if err != nil {
			lastErr = err
			continue
		}
		return parts, nil
	}
	return nil, fmt.Errorf("read Kafka metadata from %s: %w", strings.Join(k.Brokers, ","), lastErr)
}

// partition is one partition to read: its backlog ends at end (the offset
// the next record gets when Run started; -1 when reading from the end).
type partition struct {
	topic string
	id    int
	first int64
	end   int64
}

func (p partition) stream() string { return fmt.Sprintf("%s/%d", p.topic, p.id) }

func (k *Kafka) runPartitions(ctx context.Context, topics []string, apply func(Record) error) error {
	parts, err := k.readPartitions(ctx, topics...)
	if err != nil {
		return err
	}
	var todo []partition
	for _, p := range parts {
		pt := partition{topic: p.Topic, id: p.ID, end: -1}
		if k.FromStart {
			if pt.first, pt.end, err = k.offsets(ctx, p.Topic, p.ID); err != nil {
				return err
			}
			if err := apply(Record{Stream: pt.stream(), Progress: Backlog}); err != nil {
				return err
			}
		}
		if k.StopAtEnd && pt.first >= pt.end {
			if err := apply(Record{Stream: pt.stream(), Progress: CaughtUp}); err != nil {
				return err
			}
			continue // nothing to read up to the end
		}
		todo = append(todo, pt)
	}
	if len(todo) == 0 {
		return nil
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: readers stop first
	recs := make(chan Record, 256)
	errc := make(chan error, len(todo))
	for _, p := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- k.readPartition(ctx, p, recs)
		}()
	}
	running := len(todo)
	for running > 0 {
		select {
		case err := <-errc:
			running--
			if err != nil && ctx.Err() == nil {
				return err
			}
		case r := <-recs:
			if err := apply(r); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// Every reader returned: what they sent is in recs.
	for {
		select {
		case r := <-recs:
			if err := apply(r); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// offsets returns a partition's first offset and the offset the next
// record will get.
func (k *Kafka) offsets(ctx context.Context, topic string, id int) (first, last int64, err error) {
	var lastErr error
	for _, b := range k.Brokers {
		conn, err := k.dialer().DialLeader(ctx, "tcp", b, topic, id)
		if err != nil {
			lastErr = err
			continue
		}
		first, last, err = conn.ReadOffsets()
		conn.Close()
		if err != nil {
			lastErr = err
			continue
		}
		return first, last, nil
	}
	return 0, 0, fmt.Errorf("read offsets of %s/%d: %w", topic, id, lastErr)
}

func (k *Kafka) readPartition(ctx context.Context, p partition, out chan<- Record) error {
	logger := klog.FromContext(ctx)
	send := func(r Record) bool {
		select {
		case out <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	streamName := p.stream()
	if p.end >= 0 && p.first >= p.end && !send(Record{Stream: streamName, Progress: CaughtUp}) {
		return nil
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers: k.Brokers, Topic: p.topic, Partition: p.id, Dialer: k.dialer(),
		MinBytes: 1, MaxBytes: 16 << 20,
		// Short fetch waits: new records show at once and Close does not
		// wait out a long poll.
		MaxWait: 250 * time.Millisecond,
	})
	defer r.Close()
	start := kafkago.LastOffset
	if k.FromStart {
		start = kafkago.FirstOffset
	}
	if err := r.SetOffset(start); err != nil {
		return fmt.Errorf("read %s: %w", streamName, err)
	}
	caughtUp := p.end < 0 || p.first >= p.end
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read %s: %w", streamName, err)
		}
		if rec, ok := record(logger, streamName, m); ok && !send(rec) {
			return nil
		}
		if !caughtUp && m.Offset+1 >= p.end {
			caughtUp = true
			if !send(Record{Stream: streamName, Progress: CaughtUp}) || k.StopAtEnd {
				return nil
			}
		}
	}
}

// record decodes a Kafka message; tombstones (a null value: compaction's
// marker) and bodies that are not events are skipped.
func record(logger klog.Logger, streamName string, m kafkago.Message) (Record, bool) {
	if m.Value == nil {
		return Record{}, false
	}
	ct := ""
	for _, h := range m.Headers {
		if h.Key == "content-type" {
			ct = string(h.Value)
		}
	}
	origin := fmt.Sprintf("%s@%d", streamName, m.Offset)
	ev, err := Decode(ct, m.Value)
	if err != nil {
		logger.Error(err, "Skipping record that is not a kubestream event", "origin", origin)
		return Record{}, false
	}
	return Record{Stream: streamName, Origin: origin, Event: ev}, true
}

func (k *Kafka) runGroup(ctx context.Context, topics []string, apply func(Record) error) error {
	logger := klog.FromContext(ctx)
	start := kafkago.LastOffset
	if k.FromStart {
		start = kafkago.FirstOffset
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers: k.Brokers, GroupID: k.GroupID, GroupTopics: topics, Dialer: k.dialer(),
		StartOffset: start, MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 250 * time.Millisecond,
		// Commits are sent every second; each covers only records whose
		// apply returned (CommitMessages is called after apply).
		CommitInterval: time.Second,
	})
	// Close sends the commits not yet sent.
	defer r.Close()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read group %s: %w", k.GroupID, err)
		}
		if rec, ok := record(logger, fmt.Sprintf("%s/%d", m.Topic, m.Partition), m); ok {
			if err := apply(rec); err != nil {
				return err
			}
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("commit %s/%d@%d for group %s: %w", m.Topic, m.Partition, m.Offset, k.GroupID, err)
		}
	}
}
