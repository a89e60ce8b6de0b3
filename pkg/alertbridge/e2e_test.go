package alertbridge

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2/ktesting"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/imagestorage"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/natsembed"
	"github.com/kubestream/kubestream/pkg/sink/kafka"
	natssink "github.com/kubestream/kubestream/pkg/sink/nats"
)

// scenario derives real image-storage events with the tracker and the
// translator: before is published before the bridge starts, after while it
// runs.
func scenario(t *testing.T) (before, after []*kubestreamv1.Event) {
	opts := imagestorage.DefaultOptions()
	opts.WarningBytes, opts.CriticalBytes = 10*gi, 20*gi
	tr := imagestorage.NewTracker(opts)
	tl := &event.Translator{Cluster: "prod", Instance: "e2e"}
	nodes := map[string]*corev1.Node{}
	rv := 0
	step := func(name string, op change.Op, gib int64) *kubestreamv1.Event {
		t.Helper()
		rv++
		prev := nodes[name]
		n := &corev1.Node{}
		n.Name, n.UID, n.ResourceVersion = name, types.UID("uid-"+name), fmt.Sprint(rv)
		n.Status.Images = []corev1.ContainerImage{{Names: []string{"reg/" + name + ":v1"}, SizeBytes: gib * gi}}
		c := &change.Change{Kind: kinds.Nodes, Op: op, Object: n, Previous: prev, ObservedAt: now.Add(-time.Minute)}
		if op == change.Created {
			c.Previous = nil
		}
		if op == change.Deleted {
			c.Object, c.Previous = nil, prev
		}
		nodes[name] = n
		out := tr.Derive(c)
		if len(out) != 1 {
			t.Fatalf("%s %s: derived %d", op, name, len(out))
		}
		ev, err := tl.Translate(out[0])
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	before = []*kubestreamv1.Event{
		step("n0", change.Created, 25), // critical, firing
		step("n0", change.Updated, 15), // warning, downgraded: the last of n0
	}
	after = []*kubestreamv1.Event{
		step("n1", change.Created, 5),  // ok: nothing to send
		step("n1", change.Updated, 12), // warning
		step("n1", change.Updated, 22), // critical
		step("n2", change.Created, 30), // critical
		step("n1", change.Updated, 5),  // resolved
		step("n2", change.Deleted, 30), // node deleted: resolved
	}
	return before, after
}

// wantPosts are the POSTs the scenario makes, per node, in order.
var wantPosts = map[string][]string{
	"n0": {"n0/critical:resolved n0/warning:firing"},
	"n1": {"n1/critical:resolved n1/warning:firing", "n1/critical:firing n1/warning:resolved", "n1/critical:resolved n1/warning:resolved"},
	"n2": {"n2/critical:firing n2/warning:resolved", "n2/critical:resolved n2/warning:resolved"},
}

// e2eAM is a fake Alertmanager that fails the first request (after letting
// the test look at the broker), then accepts, and reports each accepted POST.
func e2eAM(t *testing.T, firstAttempt chan<- struct{}, proceed <-chan struct{}) (*fakeAM, <-chan []map[string]any) {
	am := newFakeAM(t)
	accepted := make(chan []map[string]any, 16)
	failed := false
	// A failing test must not leave the request blocked: the server's
	// Close would wait for it forever.
	abandon := make(chan struct{})
	t.Cleanup(func() { close(abandon) })
	am.respond = func(int) int {
		if !failed {
			failed = true
			select {
			case firstAttempt <- struct{}{}:
				select {
				case <-proceed:
				case <-abandon:
				}
			case <-abandon:
			}
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	inner := am.srv.Config.Handler
	am.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		before := len(am.all())
		inner.ServeHTTP(w, r)
		if posts := am.all(); len(posts) > before {
			accepted <- posts[len(posts)-1]
		}
	})
	return am, accepted
}

func byNode(post []map[string]any) string {
	return post[0]["labels"].(map[string]any)["node"].(string)
}

func TestEndToEndFromJetStream(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv, err := natsembed.Start(natsembed.Options{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sink, err := natssink.New(ctx, nc, natssink.Options{Stream: natssink.StreamOptions{Name: "KUBESTREAM", Create: true}})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(evs []*kubestreamv1.Event) {
		t.Helper()
		for i, err := range sink.Publish(ctx, evs) {
			if err != nil {
				t.Fatalf("publish %s: %v", evs[i].GetId(), err)
			}
		}
	}
	before, after := scenario(t)
	publish(before)

	firstAttempt, proceed := make(chan struct{}), make(chan struct{})
	am, accepted := e2eAM(t, firstAttempt, proceed)
	b := newBridge(am)
	src := &JetStreamSource{Conn: nc, Durable: DefaultConsumerName, Subject: Subject(DefaultPrefix)}
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, b.Handle) }()

	// Alertmanager is down: the message is delivered and not acked.
	<-firstAttempt
	js, _ := jetstream.New(nc)
	cons, err := js.Consumer(ctx, "KUBESTREAM", DefaultConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 1 || info.AckFloor.Consumer != 0 {
		t.Fatalf("while Alertmanager is down: ack pending %d, ack floor %d; want 1 pending, nothing acked", info.NumAckPending, info.AckFloor.Consumer)
	}
	close(proceed)

	// A new consumer starts from each node's last event: n0's downgrade,
	// not its first firing.
	first := <-accepted
	if got := render(first); got != wantPosts["n0"][0] {
		t.Fatalf("first post %s, want %s", got, wantPosts["n0"][0])
	}
	publish(after)
	got := map[string][]string{"n0": {render(first)}}
	var order []string
	for range 5 {
		p := <-accepted
		got[byNode(p)] = append(got[byNode(p)], render(p))
		order = append(order, render(p))
	}
	if fmt.Sprint(got) != fmt.Sprint(wantPosts) {
		t.Fatalf("posts per node:\n got %v\nwant %v", got, wantPosts)
	}
	// One stream, one message in flight: the global order holds too.
	wantOrder := []string{wantPosts["n1"][0], wantPosts["n1"][1], wantPosts["n2"][0], wantPosts["n1"][2], wantPosts["n2"][1]}
	if fmt.Sprint(order) != fmt.Sprint(wantOrder) {
		t.Fatalf("order:\n got %v\nwant %v", order, wantOrder)
	}
	// Every message gets acked once its POST was accepted (the last ack
	// follows the last POST, so wait for it).
	streamInfo, err := js.Stream(ctx, "KUBESTREAM")
	if err != nil {
		t.Fatal(err)
	}
	last := streamInfo.CachedInfo().State.LastSeq
	for {
		info, err = cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.AckFloor.Stream == last && info.NumAckPending == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := b.Stats(); st.Retries != 1 || st.Events != 7 || st.Skipped != 0 {
		t.Fatalf("stats %+v: want 1 retry, 7 events (n0's last and 6 more)", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestEndToEndFromKafka(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	o := kafka.NewOptions()
	o.Brokers = cluster.ListenAddrs()
	o.CreateTopics = true
	o.Partitions = 3
	sink, err := kafka.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(context.Background())
	before, after := scenario(t)
	for i, err := range sink.Publish(ctx, append(before, after...)) {
		if err != nil {
			t.Fatalf("publish event %d: %v", i, err)
		}
	}

	firstAttempt, proceed := make(chan struct{}), make(chan struct{})
	am, accepted := e2eAM(t, firstAttempt, proceed)
	b := newBridge(am)
	src := &KafkaSource{Brokers: cluster.ListenAddrs(), Topic: Topic(DefaultPrefix), Group: DefaultConsumerName}
	done := make(chan error, 1)
	// Count messages fully handled: nothing may be committed beyond them.
	// The first message read may be one that posts nothing (n1 created, OK)
	// and is committed at once; the one whose POST is failing must not be.
	var handled atomic.Int64
	go func() {
		done <- src.Run(ctx, func(ctx context.Context, data []byte, progress func()) error {
			err := b.Handle(ctx, data, progress)
			if err == nil {
				handled.Add(1)
			}
			return err
		})
	}()

	client := &kafkago.Client{Addr: kafkago.TCP(cluster.ListenAddrs()...)}
	committed := func() int64 {
		resp, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: DefaultConsumerName, Topics: map[string][]int{Topic(DefaultPrefix): {0, 1, 2}}})
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, p := range resp.Topics[Topic(DefaultPrefix)] {
			if p.CommittedOffset > 0 {
				sum += p.CommittedOffset
			}
		}
		return sum
	}
	<-firstAttempt
	if c, h := committed(), handled.Load(); c > h || h > 1 {
		t.Fatalf("while Alertmanager is down: %d messages committed, %d handled", c, h)
	}
	close(proceed)

	// From the first offset the whole history is replayed: n0 fires critical,
	// then downgrades.
	want := map[string][]string{
		"n0": {"n0/critical:firing n0/warning:resolved", "n0/critical:resolved n0/warning:firing"},
		"n1": wantPosts["n1"],
		"n2": wantPosts["n2"],
	}
	got := map[string][]string{}
	for range 7 {
		p := <-accepted
		got[byNode(p)] = append(got[byNode(p)], render(p))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("posts per node:\n got %v\nwant %v", got, want)
	}
	// 8 records; commits follow the POSTs.
	for committed() != 8 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
