package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/kubestream/kubestream/internal/loadtest"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/contract"
)

// received is one event read back from the bus.
type received struct {
	at     time.Time
	stream string // Kafka topic/partition, or the JetStream stream
	ev     *kubestreamv1.Event
}

// busLog is everything read back, in the order of each stream, and a
// consumer that applies the contract (pkg/contract) to it.
type busLog struct {
	mu       sync.Mutex
	evs      []received
	contract *contract.Streams
	err      error
}

func newBusLog() *busLog { return &busLog{contract: contract.NewStreams()} }

func (l *busLog) add(stream string, data []byte, at time.Time) {
	ev := &kubestreamv1.Event{}
	err := proto.Unmarshal(data, ev)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.err = fmt.Errorf("decode an event of %s: %w", stream, err)
		return
	}
	l.evs = append(l.evs, received{at: at, stream: stream, ev: ev})
	l.contract.Apply(stream, ev)
}

func (l *busLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.evs)
}

func (l *busLog) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// objects is what the contract's consumer holds: uid -> resourceVersion.
func (l *busLog) objects() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]string{}
	for uid, o := range l.contract.Objects() {
		out[uid] = o.ResourceVersion
	}
	return out
}

func isObject(ev *kubestreamv1.Event) bool {
	switch ev.GetOperation() {
	case kubestreamv1.Operation_OPERATION_CREATED, kubestreamv1.Operation_OPERATION_UPDATED,
		kubestreamv1.Operation_OPERATION_DELETED, kubestreamv1.Operation_OPERATION_SNAPSHOT:
		return ev.GetObject() != nil
	}
	return false
}

func opName(op kubestreamv1.Operation) string {
	return strings.TrimPrefix(op.String(), "OPERATION_")
}

// roundStats describes the first replay round an instance published.
type roundStats struct {
	ReplayID string `json:"replayId"`
	Reason   string `json:"reason"`
	// EndCopies is how many copies of REPLAY_END were read (one per
	// partition on Kafka, one on JetStream).
	EndCopies int       `json:"endCopies"`
	FirstAt   time.Time `json:"firstEventAt"` // the instance's first event read
	BeginAt   time.Time `json:"beginAt"`      // first REPLAY_BEGIN copy read
	EndAt     time.Time `json:"endAt"`        // last REPLAY_END copy read
	// Events are object events between the round's begin and end copies of
	// their stream; Ops counts them by operation.
	Events int            `json:"objectEvents"`
	Ops    map[string]int `json:"byOperation"`
	// Repeats are round events the reader had already read before the
	// round began: the same id, a CREATED, UPDATED or SNAPSHOT of a uid at
	// a resourceVersion already read, or a DELETED of a uid already
	// deleted.
	Repeats int `json:"repeats"`
	// After are object events of the instance read after its round's end.
	After int `json:"objectEventsAfterRound"`
}

// round finds the first REPLAY_BEGIN published by instance and counts what
// its round holds. complete is true once copies REPLAY_END copies were read.
func (l *busLog) round(instance string, copies int) (r roundStats, complete bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.Ops = map[string]int{}
	start := -1
	for i, x := range l.evs {
		if x.ev.GetInstance() != instance {
			continue
		}
		if r.FirstAt.IsZero() {
			r.FirstAt = x.at
		}
		if x.ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_BEGIN {
			start = i
			r.ReplayID = x.ev.GetReplay().GetReplayId()
			r.Reason = strings.TrimPrefix(x.ev.GetReplay().GetReason().String(), "REPLAY_REASON_")
			r.BeginAt = x.at
			break
		}
	}
	if start < 0 {
		return r, false
	}
	// What was read before the round, to recognise repeats.
	ids, versions, deleted := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, x := range l.evs[:start] {
		if !isObject(x.ev) {
			continue
		}
		o := x.ev.GetObject()
		ids[x.ev.GetId()] = true
		if x.ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED {
			deleted[o.GetUid()] = true
		} else {
			versions[o.GetUid()+"@"+o.GetResourceVersion()] = true
		}
	}
	open := map[string]bool{}   // streams inside the round
	closed := map[string]bool{} // streams past the round's end
	for _, x := range l.evs[start:] {
		ev := x.ev
		switch {
		case ev.GetReplay().GetReplayId() == r.ReplayID && ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_BEGIN:
			open[x.stream] = true
		case ev.GetReplay().GetReplayId() == r.ReplayID && ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END:
			delete(open, x.stream)
			closed[x.stream] = true
			r.EndCopies++
			r.EndAt = x.at
		case isObject(ev) && ev.GetInstance() == instance && open[x.stream]:
			r.Events++
			r.Ops[opName(ev.GetOperation())]++
			o := ev.GetObject()
			del := ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED
			if ids[ev.GetId()] || del && deleted[o.GetUid()] || !del && versions[o.GetUid()+"@"+o.GetResourceVersion()] {
				r.Repeats++
			}
		case isObject(ev) && ev.GetInstance() == instance && closed[x.stream]:
			r.After++
		}
	}
	return r, r.EndCopies >= copies
}

// firstOf is when the first event published by instance was read, and the
// event; zero when none yet.
func (l *busLog) firstOf(instance string) (time.Time, *kubestreamv1.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.evs {
		if x.ev.GetInstance() == instance {
			return x.at, x.ev
		}
	}
	return time.Time{}, nil
}

// lastOf is when the last event published by instance was read.
func (l *busLog) lastOf(instance string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.evs) - 1; i >= 0; i-- {
		if l.evs[i].ev.GetInstance() == instance {
			return l.evs[i].at
		}
	}
	return time.Time{}
}

// versions is the name@resourceVersion of every object event read.
func (l *busLog) versions() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]bool{}
	for _, x := range l.evs {
		if isObject(x.ev) {
			out[x.ev.GetObject().GetName()+"@"+x.ev.GetObject().GetResourceVersion()] = true
		}
	}
	return out
}

// countSince counts the object events of instance read at or after t, by
// operation.
func (l *busLog) countSince(instance string, t time.Time) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, x := range l.evs {
		if isObject(x.ev) && x.ev.GetInstance() == instance && !x.at.Before(t) {
			out[opName(x.ev.GetOperation())]++
		}
	}
	return out
}

// readKafka consumes topics from their start until ctx ends. It runs for
// the whole scenario, across kubestream restarts, like a real consumer.
func readKafka(ctx context.Context, brokers []string, topics []string, l *busLog) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// The topics appear when kubestream creates them.
		kgo.MetadataMinAge(100*time.Millisecond),
		kgo.MetadataMaxAge(250*time.Millisecond),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		return err
	}
	go func() {
		defer cl.Close()
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				if r.Value == nil {
					return // a tombstone
				}
				l.add(fmt.Sprintf("%s/%d", r.Topic, r.Partition), r.Value, now)
			})
		}
	}()
	return nil
}

// natsReader reads the embedded server's stream while one kubestream
// process runs it; the next process's server is read from where this one
// stopped.
type natsReader struct {
	l       *busLog
	stream  string
	mu      sync.Mutex
	lastSeq uint64
	// lost counts messages read that the stream no longer had when the
	// next server started.
	lost uint64
	nc   *nats.Conn
	cc   jetstream.ConsumeContext
}

// attach connects to url (retrying while the server starts) and reads the
// stream from the message after the last one read.
func (n *natsReader) attach(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := n.tryAttach(ctx, url)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("read JetStream stream %s at %s: %w", n.stream, url, err)
		}
		if err := loadtest.Sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

func (n *natsReader) tryAttach(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.NoReconnect(), nats.Timeout(time.Second))
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := js.Stream(cctx, n.stream)
	if err != nil {
		nc.Close()
		return err
	}
	info, err := st.Info(cctx)
	if err != nil {
		nc.Close()
		return err
	}
	n.mu.Lock()
	if last := info.State.LastSeq; last < n.lastSeq {
		// The stream lost messages this reader had read: they were
		// acknowledged, yet gone after the server restarted. Read on from
		// the stream's end, or the next messages would be skipped.
		n.lost += n.lastSeq - last
		n.lastSeq = last
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if n.lastSeq > 0 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: n.lastSeq + 1}
	}
	n.mu.Unlock()
	cons, err := js.OrderedConsumer(cctx, n.stream, cfg)
	if err != nil {
		nc.Close()
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		now := time.Now()
		md, err := m.Metadata()
		if err != nil {
			return
		}
		n.mu.Lock()
		if md.Sequence.Stream <= n.lastSeq {
			n.mu.Unlock()
			return
		}
		n.lastSeq = md.Sequence.Stream
		n.mu.Unlock()
		n.l.add(n.stream, m.Data(), now)
	})
	if err != nil {
		nc.Close()
		return err
	}
	n.nc, n.cc = nc, cc
	return nil
}

// detach stops reading (before the server goes away).
func (n *natsReader) detach() {
	if n.cc != nil {
		n.cc.Stop()
	}
	if n.nc != nil {
		n.nc.Close()
	}
	n.cc, n.nc = nil, nil
}
