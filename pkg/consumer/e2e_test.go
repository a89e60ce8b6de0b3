package consumer_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	kafkago "github.com/segmentio/kafka-go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/consumer"
	"github.com/kubestream/kubestream/pkg/consumer/consumertest"
	"github.com/kubestream/kubestream/pkg/natsembed"
)

// changes logs what handlers were told, for assertions.
type changes struct {
	mu    sync.Mutex
	lines []string
}

func (c *changes) OnAdd(o *consumer.Object, initial bool) {
	c.add(fmt.Sprintf("add %s initial=%v", o.Key(), initial))
}
func (c *changes) OnUpdate(old, o *consumer.Object) {
	c.add(fmt.Sprintf("update %s labels %v -> %v", o.Key(), old.Labels, o.Labels))
}
func (c *changes) OnDelete(o *consumer.Object) {
	state := "with final state"
	if _, err := o.Decode(); err != nil {
		state = "without state: " + err.Error()
	}
	c.add(fmt.Sprintf("delete %s %s", o.Key(), state))
}
func (c *changes) add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, s)
}
func (c *changes) has(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if l == s {
			return true
		}
	}
	return false
}

// TestKafkaStoreFollowsTheAPIServer runs the built binary against a real
// apiserver into kfake, and the library's partition reader into a store:
// after the initial round the store holds exactly the apiserver's objects,
// typed access decodes them, and live changes reach the handlers with old
// and new state.
func TestKafkaStoreFollowsTheAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	bin := testbin.BuildForTest(t)
	const ns = "consumer-kafka"
	cp, client := testbin.StartControlPlane(ctx, t, ns)
	consumertest.Populate(ctx, t, client, ns, "worker-1")
	kc := consumertest.NewKafka(t)
	p := consumertest.Start(t, bin, consumertest.KafkaRun(cp.Kubeconfig, "east", ns, kc.ListenAddrs())...)

	store := consumer.NewStore(consumer.Options{})
	seen := &changes{}
	store.AddHandler(seen)
	done := make(chan error, 1)
	readCtx, stopReading := context.WithCancel(ctx)
	go func() {
		done <- consumer.Run(readCtx, &consumer.Kafka{Brokers: kc.ListenAddrs(), FromStart: true, WaitForTopics: true}, store)
	}()
	waitSynced(ctx, t, store, done, p)
	consumertest.AwaitEqual(ctx, t, client, store, "east", ns, 30*time.Second, p)

	web := store.List("east", "pods", labels.SelectorFromSet(labels.Set{"app": "web"}))
	if len(web) != 2 {
		t.Errorf("pods with app=web: %d, want 2", len(web))
	}
	pod, err := web[0].Pod()
	if err != nil || pod.Spec.Containers[0].Image != "registry.example/web:1" {
		t.Fatalf("typed pod: %v (err %v)", pod, err)
	}
	node, ok := store.Get("east", "nodes", "", "worker-1")
	if !ok {
		t.Fatal("node worker-1 not in the store")
	}
	if n, err := node.Node(); err != nil || len(n.Status.Images) != 2 {
		t.Fatalf("typed node: images %v (err %v)", n, err)
	}
	dep, _ := store.Get("east", "deployments", ns, "api")
	if d, err := dep.Deployment(); err != nil || *d.Spec.Replicas != 2 {
		t.Fatalf("typed deployment: %v (err %v)", d, err)
	}
	cm, _ := store.Get("east", "configmaps", ns, "settings")
	if u, err := cm.Unstructured(); err != nil || u.GetKind() != "ConfigMap" || u.Object["data"].(map[string]any)["a"] != "1" {
		t.Fatalf("unstructured config map: %v (err %v)", u, err)
	}
	if !seen.has("add pods/" + ns + "/web-0 initial=true") {
		t.Errorf("the initial round's pods came as OnAdd(initial=true): got %v", seen.lines)
	}

	// Live changes.
	patch := []byte(`{"metadata":{"labels":{"app":"web","tier":"front"}}}`)
	if _, err := client.CoreV1().Pods(ns).Patch(ctx, "web-0", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().ConfigMaps(ns).Delete(ctx, "flags", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	consumertest.AwaitEqual(ctx, t, client, store, "east", ns, 30*time.Second, p)
	for _, want := range []string{
		"update pods/" + ns + "/web-0 labels map[app:web] -> map[app:web tier:front]",
		"delete configmaps/" + ns + "/flags with final state",
	} {
		if !seen.has(want) {
			t.Errorf("handlers were not told %q; they were told:\n%s", want, strings.Join(seen.lines, "\n"))
		}
	}
	if st := store.Stats(); st.Applied == 0 {
		t.Errorf("stats %+v", st)
	}
	stopReading()
	if err := <-done; err != nil {
		t.Errorf("Run after its context ended: %v, want nil", err)
	}

	// A consumer group: partitions assigned by the group, offsets committed
	// once handled. Another store reading through it reaches the same state.
	group := consumer.NewStore(consumer.Options{})
	gctx, stopGroup := context.WithCancel(ctx)
	gdone := make(chan error, 1)
	go func() {
		gdone <- consumer.Run(gctx, &consumer.Kafka{Brokers: kc.ListenAddrs(), GroupID: "inventory", FromStart: true}, group)
	}()
	waitSynced(ctx, t, group, gdone, p)
	consumertest.AwaitEqual(ctx, t, client, group, "east", ns, 60*time.Second, p)
	stopGroup()
	if err := <-gdone; err != nil {
		t.Errorf("group Run after its context ended: %v", err)
	}
	committed := committedOffsets(ctx, t, kc.ListenAddrs(), "inventory", "kubestream.pods")
	ends := endOffsets(ctx, t, kc.ListenAddrs()[0], "kubestream.pods")
	if fmt.Sprint(committed) != fmt.Sprint(ends) {
		t.Errorf("group offsets of kubestream.pods after reading everything: committed %v, partition ends %v", committed, ends)
	}
}

// TestKafkaGroupCommitsOnlyWhatWasHandled blocks a handler and checks that
// the group's committed offset does not pass the event being handled.
func TestKafkaGroupCommitsOnlyWhatWasHandled(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	bin := testbin.BuildForTest(t)
	const ns = "consumer-commit"
	cp, client := testbin.StartControlPlane(ctx, t, ns)
	consumertest.Populate(ctx, t, client, ns, "worker-1")
	kc := consumertest.NewKafka(t)
	p := consumertest.Start(t, bin, consumertest.KafkaRun(cp.Kubeconfig, "east", ns, kc.ListenAddrs())...)
	// Wait until the initial round is on the bus.
	probe := consumer.NewStore(consumer.Options{})
	pdone := make(chan error, 1)
	pctx, stopProbe := context.WithCancel(ctx)
	go func() {
		pdone <- consumer.Run(pctx, &consumer.Kafka{Brokers: kc.ListenAddrs(), FromStart: true, WaitForTopics: true}, probe)
	}()
	waitSynced(ctx, t, probe, pdone, p)
	stopProbe()
	<-pdone

	store := consumer.NewStore(consumer.Options{})
	blocked := make(chan *consumer.Object, 1)
	release := make(chan struct{})
	store.AddHandler(consumer.HandlerFuncs{AddFunc: func(o *consumer.Object, _ bool) {
		if o.Resource == "pods" && o.Name == "db-2" {
			blocked <- o
			<-release
		}
	}})
	gctx, stopGroup := context.WithCancel(ctx)
	gdone := make(chan error, 1)
	go func() {
		gdone <- consumer.Run(gctx, &consumer.Kafka{Brokers: kc.ListenAddrs(), Topics: []string{"kubestream.pods"}, GroupID: "slow", FromStart: true}, store)
	}()
	var held *consumer.Object
	select {
	case held = <-blocked:
	case err := <-gdone:
		t.Fatalf("group reader stopped: %v", err)
	case <-ctx.Done():
		t.Fatal("the handler never saw pod db-2")
	}
	// Longer than the commit interval: whatever was committed is on the
	// broker now.
	time.Sleep(2500 * time.Millisecond)
	offset := recordOffset(ctx, t, kc.ListenAddrs()[0], "kubestream.pods", held.Event.GetId())
	committed := committedOffsets(ctx, t, kc.ListenAddrs(), "slow", "kubestream.pods")
	// The partition's replay-begin marker precedes db-2 and was handled:
	// its commit is there, db-2's is not.
	if c := committed[offset.partition]; c < 1 || c > offset.offset {
		t.Errorf("partition %d: committed offset %d while the handler holds the record at %d; want the records before it committed (1..%d), not it", offset.partition, c, offset.offset, offset.offset)
	}
	close(release)
	stopGroup()
	<-gdone
}

// TestJetStreamDurableStore reads the embedded NATS server of `kubestream
// run` (the default sink) with a durable consumer, acking after handling,
// and a second time with the ordered consumer to the end of the stream.
func TestJetStreamDurableStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	bin := testbin.BuildForTest(t)
	const ns = "consumer-nats"
	cp, client := testbin.StartControlPlane(ctx, t, ns)
	consumertest.Populate(ctx, t, client, ns, "worker-1")
	dir := t.TempDir()
	p := consumertest.Start(t, bin, "run", "--kubeconfig", cp.Kubeconfig, "--cluster-name", "west", "--namespace", ns,
		"--listen-address", "127.0.0.1:0", "--nats-embedded-dir", dir, "--nats-embedded-port", "0")
	var url string
	for url == "" {
		if url = natsembed.RunningURL(dir); url == "" {
			select {
			case <-ctx.Done():
				t.Fatalf("the embedded NATS server did not start; stderr:\n%s", p.Stderr.String())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	store := consumer.NewStore(consumer.Options{})
	seen := &changes{}
	store.AddHandler(seen)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- consumer.Run(rctx, &consumer.JetStream{Conn: nc, Durable: "inventory", FromStart: true}, store)
	}()
	waitSynced(ctx, t, store, done, p)
	consumertest.AwaitEqual(ctx, t, client, store, "west", ns, 30*time.Second, p)
	if err := client.CoreV1().Pods(ns).Delete(ctx, "db-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	consumertest.AwaitEqual(ctx, t, client, store, "west", ns, 30*time.Second, p)
	if !seen.has("delete pods/" + ns + "/db-2 with final state") {
		t.Errorf("no OnDelete of db-2 with its final state: %v", seen.lines)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("Run after its context ended: %v", err)
	}
	js, _ := nc.JetStream()
	info, err := js.ConsumerInfo(consumer.DefaultStream, "inventory")
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("durable consumer after handling everything: %d awaiting ack, %d pending; want 0 and 0", info.NumAckPending, info.NumPending)
	}

	// To the end, the way kubestream get reads.
	again := consumer.NewStore(consumer.Options{})
	if err := consumer.Run(ctx, &consumer.JetStream{Conn: nc, FromStart: true, StopAtEnd: true}, again); err != nil {
		t.Fatal(err)
	}
	if d, err := consumertest.Diff(ctx, client, again, "west", ns); err != nil || d != "" || !again.HasSynced() {
		t.Errorf("read to the end: synced %v, differences:\n%s (err %v)", again.HasSynced(), d, err)
	}
}

func waitSynced(ctx context.Context, t *testing.T, store *consumer.Store, done <-chan error, p *consumertest.Process) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	go func() {
		select {
		case err := <-done:
			t.Errorf("reader stopped before the store synced: %v", err)
			cancel()
		case <-wctx.Done():
		}
	}()
	if err := store.WaitForSync(wctx); err != nil {
		t.Fatalf("store not synced: %v; kubestream stderr:\n%s", err, p.Stderr.String())
	}
}

type position struct {
	partition int
	offset    int64
}

// recordOffset finds the record with event id in topic.
func recordOffset(ctx context.Context, t *testing.T, broker, topic, id string) position {
	t.Helper()
	for part, end := range endOffsets(ctx, t, broker, topic) {
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: part, MaxWait: 100 * time.Millisecond})
		for off := int64(0); off < end; off++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range m.Headers {
				if h.Key == "ks-id" && string(h.Value) == id {
					r.Close()
					return position{part, m.Offset}
				}
			}
		}
		r.Close()
	}
	t.Fatalf("no record with id %s in %s", id, topic)
	return position{}
}

// endOffsets returns the next offset of each partition of topic.
func endOffsets(ctx context.Context, t *testing.T, broker, topic string) map[int]int64 {
	t.Helper()
	conn, err := kafkago.DialContext(ctx, "tcp", broker)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int64{}
	for _, p := range parts {
		lc, err := kafkago.DialLeader(ctx, "tcp", broker, topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		_, last, err := lc.ReadOffsets()
		lc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[p.ID] = last
	}
	return out
}

// committedOffsets returns the group's committed offset per partition.
func committedOffsets(ctx context.Context, t *testing.T, brokers []string, group, topic string) map[int]int64 {
	t.Helper()
	c := &kafkago.Client{Addr: kafkago.TCP(brokers...)}
	resp, err := c.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0, 1, 2}}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("offset fetch %s/%d: %v", topic, p.Partition, p.Error)
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out
}
