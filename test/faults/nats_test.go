package faults

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/kubestream/kubestream/internal/controlplane"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/sink/nats/natstest"
)

// natsStream is the JetStream stream kubestream publishes to in these
// tests; its resume state lives in the key-value bucket KUBESTREAM_STATE,
// a stream of its own (KV_KUBESTREAM_STATE) the reader leaves alone.
const natsStream = "KUBESTREAM"

// TestNATSRestartAfterSIGKILLSendsTheDeletes is
// TestRestartAfterSIGKILLSendsTheDeletes against a separate nats-server
// process with JetStream: kubestream publishes to a stream it creates, keeps
// its positions in a JetStream key-value bucket, and the reader is an
// ordered consumer of the whole stream applying the contract to it as one
// ordered stream.
func TestNATSRestartAfterSIGKILLSendsTheDeletes(t *testing.T) {
	restartAfterSIGKILL(t, "faults-nats-restart", func(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, ns string) sinkRun {
		t.Helper()
		srv := natstest.StartProcess(t, natstest.ProcessOptions{})
		b := startSink(t, cp.Kubeconfig, ns, "--sink", "nats", "--nats-url", srv.URL(),
			"--nats-stream", natsStream, "--nats-stream-create")
		return sinkRun{b: b, r: newNATSReader(ctx, t, srv.URL(), natsStream),
			copies: 1, // one stream: one copy of each marker
			state:  func(ctx context.Context, t *testing.T) string { return natsStateBucket(ctx, t, srv.URL()) }}
	})
}

// natsStateBucket fails the test unless the key-value bucket of the resume
// state exists, and describes it.
func natsStateBucket(ctx context.Context, t *testing.T, url string) string {
	t.Helper()
	const bucket = "KUBESTREAM_STATE"
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatalf("the resume state bucket %s: %v", bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatalf("status of the resume state bucket %s: %v", bucket, err)
	}
	return fmt.Sprintf("key-value bucket %s (stream KV_%s), %d values", bucket, bucket, st.Values())
}

// newNATSReader reads stream from its first message, in stream order, with
// a JetStream ordered consumer, and applies every event to one contract
// state (the stream is one ordered stream). It waits for kubestream to
// create the stream.
func newNATSReader(ctx context.Context, t *testing.T, url, stream string) *reader {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	r := emptyReader()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var cons jetstream.Consumer
		for {
			var err error
			if cons, err = js.OrderedConsumer(rctx, stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}); err == nil {
				break
			}
			r.mu.Lock()
			if !errors.Is(err, jetstream.ErrStreamNotFound) && rctx.Err() == nil {
				r.fetchErrs++
				r.lastErr = err
			}
			r.mu.Unlock()
			select {
			case <-rctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		it, err := cons.Messages()
		if err != nil {
			r.mu.Lock()
			r.fetchErrs++
			r.lastErr = err
			r.mu.Unlock()
			return
		}
		stop := context.AfterFunc(rctx, it.Stop)
		defer stop()
		defer it.Stop()
		var last uint64
		for {
			m, err := it.Next()
			if err != nil {
				if rctx.Err() == nil && !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					r.mu.Lock()
					r.fetchErrs++
					r.lastErr = err
					r.mu.Unlock()
				}
				return
			}
			md, err := m.Metadata()
			if err != nil {
				t.Errorf("message on %s without JetStream metadata: %v", m.Subject(), err)
				continue
			}
			if md.Sequence.Stream <= last {
				continue // an ordered consumer's redelivery after a reset
			}
			last = md.Sequence.Stream
			ev := &kubestreamv1.Event{}
			if err := proto.Unmarshal(m.Data(), ev); err != nil {
				t.Errorf("message %s #%d on %s: not a kubestream.v1.Event: %v", stream, md.Sequence.Stream, m.Subject(), err)
				continue
			}
			r.mu.Lock()
			r.records++
			r.lastRecord = time.Now()
			r.apply(stream, int64(md.Sequence.Stream), ev)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done; nc.Close() })
	return r
}
