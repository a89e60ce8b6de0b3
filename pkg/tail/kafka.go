package tail

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// Kafka reads topics with one kafka-go partition reader per partition. It
// joins no consumer group and commits nothing: tailing never moves anyone's
// offsets.
type Kafka struct {
	Brokers []string
	// Topic reads one topic; otherwise every topic named <TopicPrefix>.*.
	Topic       string
	TopicPrefix string
	// FromStart reads from each partition's first offset; otherwise from
	// its end.
	FromStart bool
	// Dialer connects to the brokers (TLS, SASL); nil dials plain TCP.
	Dialer *kafkago.Dialer
}

func (k *Kafka) dialer() *kafkago.Dialer {
	if k.Dialer != nil {
		return k.Dialer
	}
	return kafkago.DefaultDialer
}

// Run implements Source. Records of one partition arrive in order; records
// of different partitions interleave.
func (k *Kafka) Run(ctx context.Context, handle func(Message) error) error {
	if len(k.Brokers) == 0 {
		return errors.New("no Kafka brokers: pass --kafka-brokers host:9092")
	}
	parts, err := k.partitions(ctx)
	if err != nil {
		return err
	}
	// Readers stop (cancel) before Run waits for them (wg.Wait).
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := make(chan Message, 1024)
	errc := make(chan error, len(parts))
	for _, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := k.read(ctx, p, msgs); err != nil && ctx.Err() == nil {
				errc <- err
				cancel()
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			select {
			case err := <-errc:
				return err
			default:
				return ctx.Err()
			}
		case m := <-msgs:
			if err := handle(m); err != nil {
				return err
			}
		}
	}
}

func (k *Kafka) partitions(ctx context.Context) ([]kafkago.Partition, error) {
	var lastErr error
	for _, b := range k.Brokers {
		conn, err := k.dialer().DialContext(ctx, "tcp", b)
		if err != nil {
			lastErr = err
			continue
		}
		all, err := conn.ReadPartitions()
		conn.Close()
		if err != nil {
			lastErr = err
			continue
		}
		var out []kafkago.Partition
		for _, p := range all {
			if k.Topic != "" && p.Topic == k.Topic || k.Topic == "" && strings.HasPrefix(p.Topic, k.prefix()+".") {
				out = append(out, p)
			}
		}
		if len(out) == 0 {
			want := k.Topic
			if want == "" {
				want = k.prefix() + ".*"
			}
			return nil, fmt.Errorf("no Kafka topic %s on %s yet: topics appear when kubestream run --sink kafka first writes (check --kafka-topic-prefix / --kafka-topic)", want, b)
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].Topic != out[j].Topic {
				return out[i].Topic < out[j].Topic
			}
			return out[i].ID < out[j].ID
		})
		return out, nil
	}
	return nil, fmt.Errorf("list Kafka topics on %s: %w", strings.Join(k.Brokers, ","), lastErr)
}

func (k *Kafka) prefix() string {
	if k.TopicPrefix == "" {
		return "kubestream"
	}
	return k.TopicPrefix
}

func (k *Kafka) read(ctx context.Context, p kafkago.Partition, out chan<- Message) error {
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers: k.Brokers, Topic: p.Topic, Partition: p.ID, Dialer: k.dialer(),
		MinBytes: 1, MaxBytes: 16 << 20,
		// Short fetch waits: new records show at once and Close does not
		// wait out a long poll.
		MaxWait: 250 * time.Millisecond,
	})
	defer r.Close()
	offset := kafkago.LastOffset
	if k.FromStart {
		offset = kafkago.FirstOffset
	}
	if err := r.SetOffset(offset); err != nil {
		return fmt.Errorf("read %s/%d: %w", p.Topic, p.ID, err)
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return fmt.Errorf("read %s/%d: %w", p.Topic, p.ID, err)
		}
		if m.Value == nil {
			continue // a tombstone: compaction's marker, not an event
		}
		ct := ""
		for _, h := range m.Headers {
			if h.Key == "content-type" {
				ct = string(h.Value)
			}
		}
		select {
		case out <- Message{Origin: fmt.Sprintf("%s/%d@%d", m.Topic, m.Partition, m.Offset), ContentType: ct, Data: m.Value}:
		case <-ctx.Done():
			return nil
		}
	}
}
