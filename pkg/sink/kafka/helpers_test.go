package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2/ktesting"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/sink/kafka"
)

// newCluster starts an in-process Kafka (kfake) on loopback TCP.
func newCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// testOptions are the sink's defaults pointed at c, creating 3-partition
// topics.
func testOptions(c *kfake.Cluster) kafka.Options {
	o := kafka.NewOptions()
	o.Brokers = c.ListenAddrs()
	o.CreateTopics = true
	o.Partitions = 3
	return o
}

func testContext(t testing.TB) context.Context {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func openSink(t testing.TB, ctx context.Context, o kafka.Options) *kafka.Sink {
	t.Helper()
	s, err := kafka.Open(ctx, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(cctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// publish publishes events and fails the test unless all were acknowledged.
func publish(t testing.TB, ctx context.Context, s *kafka.Sink, events ...*kubestreamv1.Event) {
	t.Helper()
	if errs := s.Publish(ctx, events); errs != nil {
		for i, err := range errs {
			if err != nil {
				t.Fatalf("Publish event %d (%s): %v", i, events[i].GetId(), err)
			}
		}
		t.Fatalf("Publish returned %d results, all nil: want nil", len(errs))
	}
}

// readTopic reads every record of topic from the start to the end offsets
// it has now, with franz-go's client (not the kafka-go code under test).
func readTopic(t testing.TB, ctx context.Context, brokers []string, topic string, extra ...kgo.Opt) []*kgo.Record {
	t.Helper()
	adm, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, extra...)...)
	if err != nil {
		t.Fatalf("kgo client: %v", err)
	}
	defer adm.Close()
	ends := endOffsets(t, ctx, adm, topic)
	parts := map[int32]kgo.Offset{}
	total := int64(0)
	for p, end := range ends {
		if end > 0 {
			parts[p] = kgo.NewOffset().AtStart()
			total += end
		}
	}
	if total == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts})}, extra...)...)
	if err != nil {
		t.Fatalf("kgo client: %v", err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for int64(len(out)) < total {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: got %d of %d records before the test deadline", topic, len(out), total)
		}
		for _, fe := range fetches.Errors() {
			t.Fatalf("read %s: %v", topic, fe.Err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[r.Partition] {
				out = append(out, r)
			}
		})
	}
	return out
}

// endOffsets returns the high watermark of every partition of topic.
func endOffsets(t testing.TB, ctx context.Context, cl *kgo.Client, topic string) map[int32]int64 {
	t.Helper()
	meta, err := kgoMetadata(ctx, cl, topic)
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	return meta
}

// partitionCount returns how many partitions topic has, 0 when it does not
// exist.
func partitionCount(t testing.TB, ctx context.Context, brokers []string, topic string) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kgoMetadata(ctx, cl, topic)
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return 0
	}
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	return len(ends)
}

func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

func decode(t testing.TB, r *kgo.Record) *kubestreamv1.Event {
	t.Helper()
	ev := &kubestreamv1.Event{}
	if err := proto.Unmarshal(r.Value, ev); err != nil {
		t.Fatalf("decode record %s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
	}
	return ev
}

var translator = &event.Translator{Cluster: "test", Instance: "kubestream-0"}

func translate(t testing.TB, c *change.Change) *kubestreamv1.Event {
	t.Helper()
	if c.ObservedAt.IsZero() {
		c.ObservedAt = time.Unix(1700000000, 0)
	}
	ev, err := translator.Translate(c)
	if err != nil {
		t.Fatalf("translate: %v", err)
	}
	return ev
}

func meta(ns, name, uid, rv string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), ResourceVersion: rv, Labels: map[string]string{"app": name}}
}

func pod(ns, name, uid, rv string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: meta(ns, name, uid, rv),
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{
			{Name: "main", Image: "registry.example.com/team/app:1.2.3", Args: []string{"--listen=:8080", "--log-level=info"},
				Env: []corev1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "REGION", Value: "eu-west-1"}}},
			{Name: "sidecar", Image: "registry.example.com/infra/proxy:4.5.6"},
		}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.7", Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}},
	}
}

func configMap(ns, name, uid, rv string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: meta(ns, name, uid, rv), Data: data}
}

func node(name, uid, rv string) *corev1.Node {
	return &corev1.Node{ObjectMeta: meta("", name, uid, rv), Status: corev1.NodeStatus{
		Images: []corev1.ContainerImage{{Names: []string{"registry.example.com/team/app:1.2.3"}, SizeBytes: 123456789}}}}
}

func deployment(ns, name, uid, rv string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: meta(ns, name, uid, rv)}
}

func created(k kinds.Kind, obj change.Object) *kubestreamv1.Event {
	return mustTranslate(&change.Change{Kind: k, Op: change.Created, Object: obj})
}

func updated(k kinds.Kind, prev, obj change.Object) *kubestreamv1.Event {
	return mustTranslate(&change.Change{Kind: k, Op: change.Updated, Previous: prev, Object: obj})
}

func deleted(k kinds.Kind, prev change.Object) *kubestreamv1.Event {
	return mustTranslate(&change.Change{Kind: k, Op: change.Deleted, Previous: prev})
}

func marker(op change.Op, replayID string, ks ...string) *kubestreamv1.Event {
	return mustTranslate(&change.Change{Op: op, ReplayID: replayID, Replay: &change.Replay{Reason: kubestreamv1.ReplayReason_REPLAY_REASON_RESYNC, Kinds: ks}})
}

func imageStorage(n *corev1.Node) *kubestreamv1.Event {
	return mustTranslate(&change.Change{Kind: kinds.Nodes, Op: change.Updated, Object: n, ImageStorage: &kubestreamv1.ImageStorage{
		Node: n.Name, TotalBytes: 123456789, ImageCount: 1, Severity: kubestreamv1.Severity_SEVERITY_OK}})
}

func mustTranslate(c *change.Change) *kubestreamv1.Event {
	c.ObservedAt = time.Unix(1700000000, 0)
	ev, err := translator.Translate(c)
	if err != nil {
		panic(fmt.Sprintf("translate: %v", err))
	}
	return ev
}

// keysOf lists record keys in order.
func keysOf(recs []*kgo.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Key)
	}
	return out
}

func joinKeys(recs []*kgo.Record) string { return strings.Join(keysOf(recs), " ") }

// kgoMetadata returns the end offset of every partition of topic.
func kgoMetadata(ctx context.Context, cl *kgo.Client, topic string) (map[int32]int64, error) {
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	mreq.Topics = append(mreq.Topics, mt)
	mresp, err := mreq.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	if len(mresp.Topics) != 1 {
		return nil, fmt.Errorf("metadata answered %d topics", len(mresp.Topics))
	}
	if err := kerr.ErrorForCode(mresp.Topics[0].ErrorCode); err != nil {
		return nil, err
	}
	lreq := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	for _, p := range mresp.Topics[0].Partitions {
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition = p.Partition
		lp.Timestamp = -1 // latest
		lt.Partitions = append(lt.Partitions, lp)
	}
	lreq.Topics = append(lreq.Topics, lt)
	lresp, err := lreq.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for _, t := range lresp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return nil, fmt.Errorf("list offsets of %s/%d: %w", topic, p.Partition, err)
			}
			out[p.Partition] = p.Offset
		}
	}
	return out, nil
}
