package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/resume"
)

// ErrStateTopicNotCompacted is matched (errors.Is) by StateStore's error when
// the state topic exists without cleanup.policy=compact: it would grow with
// every flush, and retention would drop the positions of objects that did not
// change for a while.
var ErrStateTopicNotCompacted = errors.New("Kafka resume state topic is not compacted")

// stateFetchBytes bounds one fetch of the state topic.
const stateFetchBytes = 16 << 20

// stateBatchSize is the most state records per produce request.
const stateBatchSize = 100

// StateStore returns the resume state of cluster, kept in the compacted
// topic Options.StateTopicName() (default <prefix>.state).
//
// Layout: one record per store key, record key "<cluster>/<store key>"
// (StateKeyPrefix; the store key is opaque, resource/namespace/name[/uid],
// namespace empty for cluster-scoped kinds: "prod/nodes//node-a"), value
// resume.Encode ({"v":1,"uid":...,"rv":...}); a removed entry is a
// tombstone (null value), so compaction keeps one record per live entry.
// Keys are spread with the sink's murmur2 balancer, so every record of one key
// is in one partition and the last one is the current value. Several
// clusters may share the topic: Load reads only its own prefix.
//
// A missing topic is created (cleanup.policy=compact, whatever
// --kafka-topic-cleanup-policy says) with Options.CreateTopics; otherwise
// StateStore fails with an error matching ErrMissingTopics that says how to
// create it. An existing topic whose cleanup.policy lacks compact fails with
// ErrStateTopicNotCompacted; when the broker does not answer DescribeConfigs
// (permissions), a warning is logged instead.
//
// Write sends every put and removal in one WriteMessages call, acks=all,
// without kafka-go retries (the tracker retries the batch), and returns only
// when all were acknowledged. Load reads every partition from its first
// offset to its end offset as of the start of Load.
func (s *Sink) StateStore(ctx context.Context, cluster string) (resume.Store, error) {
	store, err := s.stateStore(ctx, cluster)
	if errors.Is(err, ErrMissingTopics) || errors.Is(err, ErrStateTopicNotCompacted) {
		err = resume.Misconfigured(err)
	}
	return store, err
}

func (s *Sink) stateStore(ctx context.Context, cluster string) (resume.Store, error) {
	if cluster == "" {
		return nil, errors.New("Kafka resume state: the cluster name is empty (set --cluster-name)")
	}
	topic := s.opts.StateTopicName()
	logger := klog.FromContext(ctx)
	partitions, err := s.statePartitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	if partitions == 0 {
		if !s.opts.CreateTopics {
			return nil, missingTopics([]string{topic}, "is needed for the resume state (the last acknowledged position of every object)", func(string) string {
				return fmt.Sprintf("create it compacted (kafka-topics.sh --create --topic %s --config cleanup.policy=compact), run with --kafka-create-topics, or run without resume (--resume=false)", topic)
			})
		}
		if err := s.createTopicsWith(ctx, []string{topic}, "compact", true)[topic]; err != nil {
			var ke kafkago.Error
			if errors.As(err, &ke) {
				return nil, missingTopics([]string{topic}, "the broker refused to create the resume state topic ("+err.Error()+")", func(string) string {
					return fmt.Sprintf("create it compacted (kafka-topics.sh --create --topic %s --config cleanup.policy=compact), fix the --kafka-topic-* settings or the broker's permissions, or run without resume (--resume=false)", topic)
				})
			}
			return nil, err
		}
		// Wait for the new topic's partitions to have leaders.
		deadline := time.Now().Add(AutoCreateWait)
		for partitions == 0 {
			if partitions, err = s.statePartitions(ctx, topic); err != nil {
				return nil, err
			}
			if partitions > 0 {
				break
			}
			if !time.Now().Before(deadline) {
				return nil, fmt.Errorf("Kafka resume state topic %s was created but has no partitions after %s", topic, AutoCreateWait)
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("wait for Kafka resume state topic %s: %w", topic, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	} else if err := s.checkCompacted(ctx, topic); err != nil {
		return nil, err
	}
	codec, err := parseCompression(s.opts.Compression)
	if err != nil {
		return nil, err
	}
	st := &stateStore{
		sink:    s,
		topic:   topic,
		cluster: cluster,
		prefix:  StateKeyPrefix(cluster),
		writer: &kafkago.Writer{
			Addr:         s.addr,
			Topic:        topic,
			Transport:    s.transport,
			Balancer:     &balancer{},
			RequiredAcks: kafkago.RequireAll,
			MaxAttempts:  1,
			// kafka-go reserves room for BatchSize messages in every batch it
			// starts; intents come one or a few at a time, so a small batch
			// keeps that allocation small (a 10,000-entry write still goes in
			// about 100 requests).
			BatchSize:    stateBatchSize,
			BatchBytes:   int64(s.opts.BatchBytes),
			BatchTimeout: s.opts.BatchTimeout,
			Compression:  codec,
			ReadTimeout:  s.opts.WriteTimeout,
			WriteTimeout: s.opts.WriteTimeout,
			// The topic was checked above; a topic created behind our back
			// would have the broker's default cleanup.policy.
			AllowAutoTopicCreation: false,
		},
	}
	logger.Info("Resume state in Kafka", "topic", topic, "partitions", partitions, "cluster", cluster)
	return st, nil
}

// statePartitions returns how many partitions topic has, 0 when it does not
// exist.
func (s *Sink) statePartitions(ctx context.Context, topic string) (int, error) {
	md, err := s.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("look up Kafka resume state topic %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil && !errors.Is(t.Error, kafkago.UnknownTopicOrPartition) && !errors.Is(t.Error, kafkago.LeaderNotAvailable) {
			return 0, fmt.Errorf("look up Kafka resume state topic %s: %w", topic, t.Error)
		}
		if t.Error == nil {
			return len(t.Partitions), nil
		}
	}
	return 0, nil
}

// checkCompacted fails when topic's cleanup.policy does not compact; when the
// broker does not say, it logs a warning.
func (s *Sink) checkCompacted(ctx context.Context, topic string) error {
	logger := klog.FromContext(ctx)
	resp, err := s.client.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{{
		ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"cleanup.policy"},
	}}})
	if err == nil && len(resp.Resources) == 1 && resp.Resources[0].Error != nil {
		err = resp.Resources[0].Error
	}
	if err != nil || len(resp.Resources) != 1 {
		logger.Info("Warning: could not check that the Kafka resume state topic is compacted; make sure its cleanup.policy is compact",
			"topic", topic, "err", fmt.Sprint(err))
		return nil
	}
	policy := ""
	found := false
	for _, e := range resp.Resources[0].ConfigEntries {
		if e.ConfigName == "cleanup.policy" {
			policy, found = e.ConfigValue, true
		}
	}
	switch {
	case !found:
		logger.Info("Warning: the broker did not report the cleanup.policy of the Kafka resume state topic; make sure it is compact", "topic", topic)
	case !strings.Contains(policy, "compact"):
		return fmt.Errorf("%w: topic %s has cleanup.policy=%s, so it grows with every flush and retention drops the positions of objects that did not change: set it (kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config cleanup.policy=compact), name another topic with --kafka-state-topic, or run without resume (--resume=false)",
			ErrStateTopicNotCompacted, topic, policy, topic)
	case strings.Contains(policy, "delete"):
		logger.Info("Warning: the Kafka resume state topic also deletes by retention: objects unchanged for longer than retention.ms lose their position and are sent again on resume",
			"topic", topic, "cleanupPolicy", policy)
	}
	return nil
}

// StateKeyPrefix starts the state record keys of cluster: the cluster name,
// with '%' and '/' escaped as %25 and %2F (so "a" and "a/b" never share a
// prefix), and a '/'. Store keys follow it as they are:
// "prod/pods/default/web-0".
func StateKeyPrefix(cluster string) string {
	if strings.ContainsAny(cluster, "%/") {
		cluster = strings.NewReplacer("%", "%25", "/", "%2F").Replace(cluster)
	}
	return cluster + "/"
}

// stateStore is a resume.Store in a compacted Kafka topic.
type stateStore struct {
	sink    *Sink
	topic   string
	cluster string
	prefix  string // StateKeyPrefix(cluster)
	writer  *kafkago.Writer
	// mu serializes writes (and Load's repairs), so batches land in order.
	mu sync.Mutex
}

// Write sends removals as tombstones and puts as values, in one batch. A key
// both removed and put ends up put, as with resume.MemoryStore.
func (st *stateStore) Write(ctx context.Context, puts map[string]resume.Entry, deletes []string) error {
	msgs := make([]kafkago.Message, 0, len(puts)+len(deletes))
	for _, k := range deletes {
		if _, put := puts[k]; !put {
			msgs = append(msgs, kafkago.Message{Key: []byte(st.prefix + k)})
		}
	}
	for k, e := range puts {
		msgs = append(msgs, kafkago.Message{Key: []byte(st.prefix + k), Value: resume.Encode(e)})
	}
	if len(msgs) == 0 {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.write(ctx, msgs, len(puts), len(msgs)-len(puts))
}

func (st *stateStore) write(ctx context.Context, msgs []kafkago.Message, puts, removals int) error {
	err := st.writer.WriteMessages(ctx, msgs...)
	if err == nil {
		return nil
	}
	var we kafkago.WriteErrors
	if errors.As(err, &we) {
		if first := firstError(err); first != nil {
			err = fmt.Errorf("%d of %d records failed, first: %w", we.Count(), len(msgs), first)
		}
	}
	return fmt.Errorf("save %d positions and %d removals to Kafka topic %s: %w", puts, removals, st.topic, err)
}

// stateRecord is the last record of one key in one partition.
type stateRecord struct {
	partition int
	value     []byte // nil: tombstone
}

// Load reads the whole topic up to its end as of now and returns the last
// value of every key of this cluster.
func (st *stateStore) Load(ctx context.Context) (map[string]resume.Entry, error) {
	s := st.sink
	logger := klog.FromContext(ctx)
	md, err := s.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{st.topic}})
	if err != nil {
		return nil, fmt.Errorf("load resume state: look up Kafka topic %s: %w", st.topic, err)
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Name == st.topic {
			if t.Error != nil {
				return nil, fmt.Errorf("load resume state: Kafka topic %s: %w", st.topic, t.Error)
			}
			for _, p := range t.Partitions {
				parts = append(parts, p.ID)
			}
		}
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("load resume state: Kafka topic %s has no partitions", st.topic)
	}
	bounds, err := st.offsets(ctx, parts)
	if err != nil {
		return nil, err
	}

	// Each partition keeps the last record per key; partitions are read
	// concurrently.
	perPartition := make([]map[string][]byte, len(parts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, p := range parts {
		g.Go(func() error {
			m, err := st.readPartition(gctx, p, bounds[p])
			perPartition[i] = m
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	// The records of a key are all in the partition the balancer maps it to,
	// unless partitions were added since: then the key's current partition
	// wins, and the stale copies elsewhere are repaired below.
	// kafka-go's Writer balances over partitions 0..n-1, as Kafka numbers
	// them.
	sorted := make([]int, len(parts))
	for i := range sorted {
		sorted[i] = i
	}
	var mm kafkago.Murmur2Balancer
	last := map[string][]stateRecord{}
	for i, m := range perPartition {
		for k, v := range m {
			last[k] = append(last[k], stateRecord{partition: parts[i], value: v})
		}
	}
	out := make(map[string]resume.Entry, len(last))
	var repair []kafkago.Message
	undecodable := 0
	var firstBad error
	for k, recs := range last {
		key := []byte(st.prefix + k)
		current := mm.Balance(kafkago.Message{Key: key}, sorted...)
		chosen, inCurrent := recs[0], false
		for _, r := range recs {
			if r.partition == current {
				chosen, inCurrent = r, true
			}
		}
		if !inCurrent && chosen.value != nil {
			// Only copies outside the key's partition: write the value where
			// the key lives now.
			repair = append(repair, kafkago.Message{Key: key, Value: chosen.value})
		}
		for _, r := range recs {
			if r.partition != current && r.value != nil {
				// A stale copy would outlive the key's tombstone: remove it.
				repair = append(repair, kafkago.Message{Key: key, WriterData: forcedPartition(r.partition)})
			}
		}
		if chosen.value == nil {
			continue
		}
		e, err := resume.Decode(chosen.value)
		if err != nil {
			undecodable++
			if firstBad == nil {
				firstBad = fmt.Errorf("key %s: %w", key, err)
			}
			continue
		}
		out[k] = e
	}
	if undecodable > 0 {
		logger.Info("Warning: skipped resume state records that do not decode; those objects are sent again",
			"topic", st.topic, "records", undecodable, "first", firstBad.Error())
	}
	if len(repair) > 0 {
		logger.Info("Warning: resume state records outside their key's partition (were partitions added to the state topic?); moving them",
			"topic", st.topic, "records", len(repair))
		st.mu.Lock()
		err := st.write(ctx, repair, 0, len(repair))
		st.mu.Unlock()
		if err != nil {
			logger.Error(err, "Repairing the resume state topic failed; the next Load tries again", "topic", st.topic)
		}
	}
	return out, nil
}

// offsetRange is a partition's first offset and its end offset (the next
// offset to be written) at the start of Load.
type offsetRange struct{ first, end int64 }

func (st *stateStore) offsets(ctx context.Context, parts []int) (map[int]offsetRange, error) {
	reqs := make([]kafkago.OffsetRequest, 0, 2*len(parts))
	for _, p := range parts {
		reqs = append(reqs, kafkago.FirstOffsetOf(p), kafkago.LastOffsetOf(p))
	}
	resp, err := st.sink.client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{st.topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("load resume state: list offsets of Kafka topic %s: %w", st.topic, err)
	}
	out := map[int]offsetRange{}
	for _, po := range resp.Topics[st.topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("load resume state: list offsets of Kafka topic %s partition %d: %w", st.topic, po.Partition, po.Error)
		}
		out[po.Partition] = offsetRange{first: po.FirstOffset, end: po.LastOffset}
	}
	for _, p := range parts {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("load resume state: Kafka topic %s: no offsets for partition %d", st.topic, p)
		}
	}
	return out, nil
}

// readPartition returns the last record of every key of this cluster in
// partition p between r.first and r.end.
func (st *stateStore) readPartition(ctx context.Context, p int, r offsetRange) (map[string][]byte, error) {
	out := map[string][]byte{}
	off := r.first
	for off < r.end {
		resp, err := st.sink.client.Fetch(ctx, &kafkago.FetchRequest{
			Topic: st.topic, Partition: p, Offset: off,
			MinBytes: 1, MaxBytes: stateFetchBytes, MaxWait: 200 * time.Millisecond,
		})
		if err != nil {
			return nil, fmt.Errorf("load resume state: fetch Kafka topic %s partition %d at offset %d: %w", st.topic, p, off, err)
		}
		if resp.Error != nil {
			if errors.Is(resp.Error, kafkago.OffsetOutOfRange) && resp.LogStartOffset > off {
				// Retention (cleanup.policy with delete) moved the start.
				off = resp.LogStartOffset
				continue
			}
			return nil, fmt.Errorf("load resume state: fetch Kafka topic %s partition %d at offset %d: %w", st.topic, p, off, resp.Error)
		}
		n := 0
		for {
			rec, err := resp.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("load resume state: read Kafka topic %s partition %d at offset %d: %w", st.topic, p, off, err)
			}
			if rec.Offset < off {
				continue // batches may start before the offset asked for
			}
			if rec.Offset >= r.end {
				break
			}
			off = rec.Offset + 1
			n++
			key, err := protocol.ReadAll(rec.Key)
			if err != nil {
				return nil, fmt.Errorf("load resume state: read key at %s/%d@%d: %w", st.topic, p, rec.Offset, err)
			}
			k, ok := strings.CutPrefix(string(key), st.prefix)
			if !ok {
				continue // another cluster's
			}
			if rec.Value == nil {
				out[k] = nil
				continue
			}
			v, err := protocol.ReadAll(rec.Value)
			if err != nil {
				return nil, fmt.Errorf("load resume state: read value at %s/%d@%d: %w", st.topic, p, rec.Offset, err)
			}
			if v == nil {
				v = []byte{}
			}
			out[k] = v
		}
		if n == 0 {
			// Nothing left before the end: compaction removed the tail.
			break
		}
	}
	return out, nil
}

// Close stops the store's writer; the sink's connections stay.
func (st *stateStore) Close() error {
	if err := st.writer.Close(); err != nil {
		return fmt.Errorf("close Kafka resume state writer: %w", err)
	}
	return nil
}
