package nats_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/natsembed"
	"github.com/kubestream/kubestream/pkg/sink/nats/natstest"
)

// peer is a NATS server under test.
type peer struct {
	name string
	url  string
}

// peers starts both kinds of server: the embedded one kubestream runs by
// default and a separate nats-server process.
func peers(t *testing.T) []peer {
	t.Helper()
	emb, err := natsembed.Start(natsembed.Options{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	proc := natstest.StartProcess(t, natstest.ProcessOptions{})
	return []peer{{"embedded", emb.URL()}, {"process", proc.URL()}}
}

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// podEvents translates n updates of n different pods.
func podEvents(t testing.TB, n, rv int) []*kubestreamv1.Event {
	t.Helper()
	tr := &event.Translator{Cluster: "test", Instance: "t"}
	out := make([]*kubestreamv1.Event, n)
	for i := range out {
		ev, err := tr.Translate(natstest.PodUpdate("payments", fmt.Sprintf("api-%d.v1", i), fmt.Sprintf("uid-%d", i), rv))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = ev
	}
	return out
}

// readStream returns every message of a stream, in stream order.
func readStream(t testing.TB, nc *nats.Conn, stream string) []jetstream.Msg {
	t.Helper()
	ctx := ctxFor(t, 60*time.Second)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	total := int(s.CachedInfo().State.Msgs)
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < total {
		batch, err := cons.Fetch(min(total-len(out), 500), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			out = append(out, m)
			got++
		}
		if batch.Error() != nil {
			t.Fatalf("fetch from %s: %v", stream, batch.Error())
		}
		if got == 0 {
			t.Fatalf("stream %s: fetched %d of %d messages, then nothing", stream, len(out), total)
		}
	}
	return out
}

func decode(t testing.TB, data []byte) *kubestreamv1.Event {
	t.Helper()
	ev := &kubestreamv1.Event{}
	if err := proto.Unmarshal(data, ev); err != nil {
		t.Fatalf("decode event: %v", err)
	}
	return ev
}

func noErrors(t testing.TB, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
}
