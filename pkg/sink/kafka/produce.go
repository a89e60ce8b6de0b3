package kafka

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
)

// producer sends a call's records straight to the partition leaders: one
// produce request (acks=all) per partition and call, the requests of one
// call in parallel, the call returning when every one was answered.
//
// It replaces kafka-go's Writer on the hot path. The Writer hands each
// record to a goroutine per partition that lingers up to BatchTimeout for
// more, allocates room for BatchSize records per batch (150 KB at the
// default 1000, for the one or two records a batch holds at a few hundred
// events per second) and a timer, and wakes three goroutines per request.
// The pipeline already batches: a Publish carries what queued up while the
// previous one was in flight, so batches grow with the load and add no
// latency when it is low.
type producer struct {
	client     *kafkago.Client
	transport  *kafkago.Transport
	addr       net.Addr
	balancer   kafkago.Balancer
	codec      kafkago.Compression
	batchSize  int
	batchBytes int
	// autoCreate lets the partition look-up ask the broker to create a
	// missing topic, as the Writer's does.
	autoCreate bool

	mu     sync.Mutex
	ids    []int // 0, 1, 2, ...: the balancer's partition list, shared
	counts map[string]partitionCount
}

// topicPartition identifies one produce request's target.
type topicPartition struct {
	topic     string
	partition int
}

// write sends msgs and returns nil when Kafka acknowledged all of them,
// else one error per message (nil for those acknowledged).
func (p *producer) write(ctx context.Context, msgs []kafkago.Message) []error {
	var errs []error
	fail := func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(msgs))
		}
		errs[i] = err
	}
	// Most calls are about one topic: look its partitions up once.
	var lastTopic string
	var lastCount int
	var lastErr error
	groups := map[topicPartition][]int{}
	var order []topicPartition
	for i := range msgs {
		m := &msgs[i]
		if m.Topic != lastTopic || i == 0 {
			lastTopic = m.Topic
			lastCount, lastErr = p.partitions(ctx, m.Topic)
		}
		if lastErr != nil {
			fail(i, lastErr)
			continue
		}
		tp := topicPartition{m.Topic, p.balancer.Balance(*m, p.partitionIDs(lastCount)...)}
		if _, ok := groups[tp]; !ok {
			order = append(order, tp)
		}
		groups[tp] = append(groups[tp], i)
	}

	var requests []request
	for _, tp := range order {
		requests = p.split(requests, tp, msgs, groups[tp])
	}
	results := make([]error, len(requests))
	var wg sync.WaitGroup
	for r := 1; r < len(requests); r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[r] = p.produce(ctx, requests[r], msgs)
		}()
	}
	if len(requests) > 0 {
		results[0] = p.produce(ctx, requests[0], msgs)
	}
	wg.Wait()
	for r, err := range results {
		if err == nil {
			continue
		}
		for _, i := range requests[r].indexes {
			fail(i, err)
		}
	}
	return errs
}

// request is the records of one produce request, as indexes into the
// call's messages.
type request struct {
	topicPartition
	indexes []int
}

// split appends tp's records as requests of at most batchSize records and
// batchBytes bytes (a record larger than batchBytes goes alone; the sink
// keeps those off this path).
func (p *producer) split(out []request, tp topicPartition, msgs []kafkago.Message, indexes []int) []request {
	start, size := 0, 0
	for k, i := range indexes {
		n := recordSize(&msgs[i])
		if k > start && (k-start >= p.batchSize || size+n > p.batchBytes) {
			out = append(out, request{tp, indexes[start:k]})
			start, size = k, 0
		}
		size += n
	}
	return append(out, request{tp, indexes[start:]})
}

// produce sends one request and waits for its acknowledgement.
func (p *producer) produce(ctx context.Context, r request, msgs []kafkago.Message) error {
	res, err := p.client.Produce(ctx, &kafkago.ProduceRequest{
		Topic:        r.topic,
		Partition:    r.partition,
		RequiredAcks: kafkago.RequireAll,
		Compression:  p.codec,
		Records:      &messageRecords{msgs: msgs, indexes: r.indexes},
	})
	if err != nil {
		return err
	}
	if res.Error != nil {
		return res.Error
	}
	for _, err := range res.RecordErrors {
		// The broker refused some records of the batch (Produce v8+):
		// the whole batch was not appended.
		return err
	}
	return nil
}

// partitions is the number of partitions of topic, from the transport's
// metadata cache (it refreshes every few seconds), as the Writer does;
// kept here for a second, since asking the transport costs a request's
// encoding and decoding on every call.
func (p *producer) partitions(ctx context.Context, topic string) (int, error) {
	now := time.Now()
	p.mu.Lock()
	c, ok := p.counts[topic]
	p.mu.Unlock()
	if ok && now.Sub(c.at) < partitionCountTTL {
		return c.n, nil
	}
	n, err := p.lookupPartitions(ctx, topic)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	if p.counts == nil {
		p.counts = map[string]partitionCount{}
	}
	p.counts[topic] = partitionCount{n: n, at: now}
	p.mu.Unlock()
	return n, nil
}

// partitionCountTTL is how long a topic's partition count is reused.
const partitionCountTTL = time.Second

type partitionCount struct {
	n  int
	at time.Time
}

func (p *producer) lookupPartitions(ctx context.Context, topic string) (int, error) {
	r, err := p.transport.RoundTrip(ctx, p.addr, &metadataAPI.Request{TopicNames: []string{topic}, AllowAutoTopicCreation: p.autoCreate})
	if err != nil {
		return 0, err
	}
	for _, t := range r.(*metadataAPI.Response).Topics {
		if t.Name == topic {
			if t.ErrorCode != 0 {
				return 0, kafkago.Error(t.ErrorCode)
			}
			if len(t.Partitions) == 0 {
				return 0, kafkago.UnknownTopicOrPartition
			}
			return len(t.Partitions), nil
		}
	}
	return 0, kafkago.UnknownTopicOrPartition
}

// partitionIDs returns 0..n-1, shared between calls: the balancer only
// reads it.
func (p *producer) partitionIDs(n int) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.ids) < n {
		p.ids = append(p.ids, len(p.ids))
	}
	return p.ids[:n:n]
}

// messageRecords reads the records of one request without copying them.
type messageRecords struct {
	msgs       []kafkago.Message
	indexes    []int
	next       int
	record     kafkago.Record
	key, value bytesReader
}

func (r *messageRecords) ReadRecord() (*kafkago.Record, error) {
	if r.next >= len(r.indexes) {
		return nil, io.EOF
	}
	m := &r.msgs[r.indexes[r.next]]
	r.next++
	r.record = kafkago.Record{Time: m.Time, Headers: m.Headers}
	if m.Key != nil {
		r.key.Reset(m.Key)
		r.record.Key = &r.key
	}
	if m.Value != nil {
		r.value.Reset(m.Value)
		r.record.Value = &r.value
	}
	return &r.record, nil
}

// bytesReader is a record key or value: kafka-go reads it once.
type bytesReader struct{ bytes.Reader }

func (*bytesReader) Close() error { return nil }
