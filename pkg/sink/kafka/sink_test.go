package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/pipeline"
	"github.com/kubestream/kubestream/pkg/sink/kafka"
)

func TestTopicPerKindKeysHeadersAndTombstones(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	o.Tombstones = true
	s := openSink(t, ctx, o)

	web1 := pod("shop", "web", "uid-web-1", "10")
	web2 := pod("shop", "web", "uid-web-1", "11")
	web2.Status.Phase = "Succeeded"
	// The same name again after the delete: a new object (new uid).
	webAgain := pod("shop", "web", "uid-web-2", "13")
	n := node("node-1", "uid-node-1", "20")
	events := []*kubestreamv1.Event{
		created(kinds.Pods, web1),
		updated(kinds.Pods, web1, web2),
		created(kinds.ConfigMaps, configMap("shop", "settings", "uid-cm-1", "30", map[string]string{"a": "1"})),
		created(kinds.Deployments, deployment("shop", "web", "uid-deploy-1", "40")),
		created(kinds.Nodes, n),
		imageStorage(n),
	}
	// Publish one event per call for the pod, like the pipeline does (one in
	// flight per object), and the others together.
	for _, ev := range events {
		publish(t, ctx, s, ev)
	}
	del := deleted(kinds.Pods, web2)
	publish(t, ctx, s, del)
	publish(t, ctx, s, created(kinds.Pods, webAgain))

	pods := readTopic(t, ctx, o.Brokers, "kubestream.pods")
	if len(pods) != 5 {
		t.Fatalf("kubestream.pods holds %d records (%s), want 5: created, updated, deleted, tombstone, created", len(pods), joinKeys(pods))
	}
	wantOps := []string{"created", "updated", "deleted", kafka.OpTombstone, "created"}
	for i, r := range pods {
		if string(r.Key) != "pods/shop/web" {
			t.Errorf("record %d key %q, want pods/shop/web", i, r.Key)
		}
		if r.Partition != pods[0].Partition {
			t.Errorf("record %d in partition %d, want all of one object in partition %d", i, r.Partition, pods[0].Partition)
		}
		if op, _ := header(r, event.HeaderOp); op != wantOps[i] {
			t.Errorf("record %d ks-op %q, want %q (records out of order?)", i, op, wantOps[i])
		}
		if k, _ := header(r, event.HeaderKind); k != "pods" {
			t.Errorf("record %d ks-kind %q, want pods", i, k)
		}
		if ns, _ := header(r, event.HeaderNamespace); ns != "shop" {
			t.Errorf("record %d ks-namespace %q, want shop", i, ns)
		}
		if v, _ := header(r, event.HeaderSchema); v != "1" {
			t.Errorf("record %d ks-schema %q, want 1", i, v)
		}
		if v, _ := header(r, event.HeaderCluster); v != "test" {
			t.Errorf("record %d ks-cluster %q, want test", i, v)
		}
	}
	for i, r := range pods {
		ct, hasCT := header(r, event.HeaderContentType)
		if wantOps[i] == kafka.OpTombstone {
			if r.Value != nil || hasCT {
				t.Errorf("tombstone has value %d bytes, content-type %v: want null value, no content-type", len(r.Value), hasCT)
			}
			if id, _ := header(r, event.HeaderID); id != del.GetId() {
				t.Errorf("tombstone ks-id %q, want the delete's id %q", id, del.GetId())
			}
			continue
		}
		if ct != event.ContentTypeProtobuf {
			t.Errorf("record %d content-type %q, want %q", i, ct, event.ContentTypeProtobuf)
		}
		ev := decode(t, r)
		if id, _ := header(r, event.HeaderID); id != ev.GetId() {
			t.Errorf("record %d ks-id %q, value id %q", i, id, ev.GetId())
		}
	}
	if got := decode(t, pods[4]).GetObject().GetUid(); got != "uid-web-2" {
		t.Errorf("last pod record is about uid %q, want the re-created uid-web-2", got)
	}
	if got := decode(t, pods[1]).GetChange().GetPrevious(); len(got) == 0 {
		t.Errorf("update lost its previous state")
	}

	for _, want := range []struct{ topic, key, kind string }{
		{"kubestream.configmaps", "configmaps/shop/settings", "configmaps"},
		{"kubestream.deployments", "deployments/shop/web", "deployments"},
		{"kubestream.nodes", "nodes/node-1", "nodes"},
		{"kubestream.imagestorage", "imagestorage/node-1", "imagestorage"},
	} {
		recs := readTopic(t, ctx, o.Brokers, want.topic)
		if len(recs) != 1 || string(recs[0].Key) != want.key {
			t.Errorf("%s holds %q, want one record keyed %s", want.topic, joinKeys(recs), want.key)
			continue
		}
		if k, _ := header(recs[0], event.HeaderKind); k != want.kind {
			t.Errorf("%s: ks-kind %q, want %q", want.topic, k, want.kind)
		}
		if _, ok := header(recs[0], event.HeaderNamespace); ok && want.kind == "nodes" {
			t.Errorf("%s: cluster-scoped record carries ks-namespace", want.topic)
		}
	}
	if st := s.Stats(); st.Tombstones != 1 || st.Records != 9 {
		t.Errorf("stats %+v, want 9 records of which 1 tombstone", st)
	}
}

func TestManyObjectsKeepOrderPerObject(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	s := openSink(t, ctx, o)
	// 40 objects, 5 versions each, published in batches that mix objects
	// (never two versions of one object in one call, like the pipeline).
	const objects, versions = 40, 5
	for v := 1; v <= versions; v++ {
		var batch []*kubestreamv1.Event
		for i := 0; i < objects; i++ {
			p := pod("ns", fmt.Sprintf("p-%02d", i), fmt.Sprintf("uid-%02d", i), fmt.Sprint(v))
			batch = append(batch, created(kinds.Pods, p))
		}
		publish(t, ctx, s, batch...)
	}
	recs := readTopic(t, ctx, o.Brokers, "kubestream.pods")
	if len(recs) != objects*versions {
		t.Fatalf("read %d records, want %d", len(recs), objects*versions)
	}
	last := map[string]int{}
	parts := map[string]int32{}
	for _, r := range recs {
		ev := decode(t, r)
		var v int
		fmt.Sscan(ev.GetObject().GetResourceVersion(), &v)
		k := string(r.Key)
		if p, ok := parts[k]; ok && p != r.Partition {
			t.Fatalf("%s in partitions %d and %d", k, p, r.Partition)
		}
		parts[k] = r.Partition
		if v <= last[k] {
			t.Fatalf("%s: version %d after %d", k, v, last[k])
		}
		last[k] = v
	}
	used := map[int32]bool{}
	for _, p := range parts {
		used[p] = true
	}
	if len(used) < 2 {
		t.Errorf("40 keys all hashed to %d partition(s): want them spread", len(used))
	}
}

func TestSingleTopicMode(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	o.Topic = "cluster-events"
	s := openSink(t, ctx, o)
	publish(t, ctx, s,
		created(kinds.Pods, pod("a", "x", "u1", "1")),
		created(kinds.ConfigMaps, configMap("a", "x", "u2", "2", nil)),
		created(kinds.Nodes, node("x", "u3", "3")),
	)
	publish(t, ctx, s, marker(change.ReplayBegin, "r1", "pods", "nodes"))
	recs := readTopic(t, ctx, o.Brokers, "cluster-events")
	keys := map[string]int{}
	for _, r := range recs {
		keys[string(r.Key)]++
	}
	for _, k := range []string{"pods/a/x", "configmaps/a/x", "nodes/x"} {
		if keys[k] != 1 {
			t.Errorf("key %s appears %d times in cluster-events, want once (keys: %v)", k, keys[k], keys)
		}
	}
	if got := len(recs) - 3; got != 3 {
		t.Errorf("%d marker copies in the single topic, want one per partition (3)", got)
	}
	if n := partitionCount(t, ctx, o.Brokers, "kubestream.pods"); n != 0 {
		t.Errorf("single-topic mode created kubestream.pods")
	}
}

func TestReplayMarkersReachEveryPartition(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	o.Partitions = 4
	s := openSink(t, ctx, o)
	begin := marker(change.ReplayBegin, "round-1", "pods", "nodes")
	publish(t, ctx, s, begin)
	publish(t, ctx, s, created(kinds.Pods, pod("a", "p", "u1", "1")))
	end := marker(change.ReplayEnd, "round-1", "pods", "nodes")
	publish(t, ctx, s, end)

	for _, topic := range []string{"kubestream.pods", "kubestream.nodes", "kubestream.imagestorage"} {
		recs := readTopic(t, ctx, o.Brokers, topic)
		perPartition := map[int32][]string{}
		for _, r := range recs {
			op, _ := header(r, event.HeaderOp)
			perPartition[r.Partition] = append(perPartition[r.Partition], op)
			if strings.HasPrefix(op, "replay_") {
				if want := fmt.Sprintf("%s%d", kafka.MarkerKeyPrefix, r.Partition); string(r.Key) != want {
					t.Errorf("%s: marker key %q in partition %d, want %q", topic, r.Key, r.Partition, want)
				}
				if k, _ := header(r, event.HeaderKind); k != "pods,nodes" {
					t.Errorf("%s: marker ks-kind %q, want pods,nodes", topic, k)
				}
				if id, _ := header(r, event.HeaderReplayID); id != "round-1" {
					t.Errorf("%s: marker ks-replay-id %q", topic, id)
				}
				if ev := decode(t, r); ev.GetReplay().GetReplayId() != "round-1" {
					t.Errorf("%s: marker value %v", topic, ev)
				}
			}
		}
		if len(perPartition) != 4 {
			t.Errorf("%s: markers in %d partitions, want all 4: %v", topic, len(perPartition), perPartition)
		}
		for p, ops := range perPartition {
			if ops[0] != "replay_begin" || ops[len(ops)-1] != "replay_end" {
				t.Errorf("%s partition %d: %v, want replay_begin first and replay_end last", topic, p, ops)
			}
		}
	}
	if n := partitionCount(t, ctx, o.Brokers, "kubestream.deployments"); n != 0 {
		t.Errorf("a round over pods and nodes created kubestream.deployments")
	}
	if st := s.Stats(); st.MarkerCopies != 24 {
		t.Errorf("MarkerCopies %d, want 2 markers x 3 topics x 4 partitions = 24", st.MarkerCopies)
	}
}

func TestTopicCreationSettings(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	o.Partitions = 5
	o.CleanupPolicy = "compact"
	o.TopicConfig = []string{"retention.ms=3600000"}
	s := openSink(t, ctx, o)
	publish(t, ctx, s, created(kinds.ConfigMaps, configMap("a", "b", "u", "1", nil)))

	if n := partitionCount(t, ctx, o.Brokers, "kubestream.configmaps"); n != 5 {
		t.Errorf("created topic has %d partitions, want 5", n)
	}
	cl := &kafkago.Client{Addr: kafkago.TCP(o.Brokers...)}
	resp, err := cl.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{{
		ResourceType: kafkago.ResourceTypeTopic, ResourceName: "kubestream.configmaps",
		ConfigNames: []string{"cleanup.policy", "retention.ms"}}}})
	if err != nil {
		t.Fatalf("describe configs: %v", err)
	}
	got := map[string]string{}
	for _, r := range resp.Resources {
		for _, e := range r.ConfigEntries {
			got[e.ConfigName] = e.ConfigValue
		}
	}
	if got["cleanup.policy"] != "compact" || got["retention.ms"] != "3600000" {
		t.Errorf("topic configs %v, want cleanup.policy=compact retention.ms=3600000", got)
	}
}

func TestMissingTopicWithoutCreationIsRetriable(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	o.CreateTopics = false
	s := openSink(t, ctx, o)
	errs := s.Publish(ctx, []*kubestreamv1.Event{created(kinds.Pods, pod("a", "b", "u", "1"))})
	if errs == nil || errs[0] == nil {
		t.Fatalf("publish to a missing topic succeeded")
	}
	if errors.Is(errs[0], pipeline.ErrPermanent) {
		t.Errorf("missing topic is permanent: %v (the topic may be created later)", errs[0])
	}
	if !strings.Contains(errs[0].Error(), "kubestream.pods") || !strings.Contains(errs[0].Error(), "--kafka-create-topics") {
		t.Errorf("error %q does not name the topic and the fix", errs[0])
	}
	// Created by someone else: the next attempt goes through.
	admin := &kafkago.Client{Addr: kafkago.TCP(o.Brokers...)}
	if _, err := admin.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{Topic: "kubestream.pods", NumPartitions: 2, ReplicationFactor: -1}}}); err != nil {
		t.Fatal(err)
	}
	for {
		errs = s.Publish(ctx, []*kubestreamv1.Event{created(kinds.Pods, pod("a", "b", "u", "1"))})
		if errs == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("topic never became usable: %v", errs[0])
		}
		time.Sleep(100 * time.Millisecond) // metadata cache refresh
	}
}

func TestOpenWithoutBrokerNamesAddresses(t *testing.T) {
	ctx := testContext(t)
	var addrs []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close() // nothing listens there now
	}
	o := kafka.NewOptions()
	o.Brokers = addrs
	o.DialTimeout = 2 * time.Second
	_, err := kafka.Open(ctx, o)
	if !errors.Is(err, kafka.ErrNoBroker) {
		t.Fatalf("Open: %v, want ErrNoBroker", err)
	}
	for _, a := range addrs {
		if !strings.Contains(err.Error(), a) {
			t.Errorf("error %q does not name %s", err, a)
		}
	}
	if !strings.Contains(err.Error(), "--kafka-brokers") {
		t.Errorf("error %q does not say what to check", err)
	}
}

// TestPublishReturnsOnTheAck: records that fit in a batch are produced
// when Publish is called and acknowledged before it returns, whatever
// --kafka-batch-timeout says, so Close has nothing of theirs to flush.
func TestPublishReturnsOnTheAck(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	o.BatchTimeout = time.Hour // a lingering batch would outlive the test
	s := openSink(t, ctx, o)
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if errs := s.Publish(pctx, []*kubestreamv1.Event{created(kinds.Pods, pod("a", "now", "u1", "1"))}); errs != nil {
		t.Fatalf("Publish: %v", errs)
	}
	keys := keysOf(readTopic(t, ctx, o.Brokers, "kubestream.pods"))
	if !strings.Contains(strings.Join(keys, " "), "pods/a/now") {
		t.Errorf("acknowledged record is not in Kafka: %v", keys)
	}
}

// TestPublishWithCancelledContext fails every event with the context's
// error: nothing counts as delivered that Kafka did not acknowledge.
func TestPublishWithCancelledContext(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	s := openSink(t, ctx, testOptions(c))
	publish(t, ctx, s, created(kinds.Pods, pod("a", "warm", "u0", "1")))
	pctx, cancel := context.WithCancel(ctx)
	cancel()
	errs := s.Publish(pctx, []*kubestreamv1.Event{created(kinds.Pods, pod("a", "b", "u1", "1")), created(kinds.Pods, pod("a", "c", "u2", "1"))})
	if len(errs) != 2 || !errors.Is(errs[0], context.Canceled) || !errors.Is(errs[1], context.Canceled) {
		t.Fatalf("Publish with a cancelled context: %v, want context.Canceled for both", errs)
	}
	if st := s.Stats(); st.Records != 1 {
		t.Errorf("records counted %d, want 1 (the warm-up)", st.Records)
	}
}

// TestValueIsTheEvent checks the value is exactly the
// protobuf Event, so header-routing consumers and decoders agree.
func TestValueIsTheEvent(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	s := openSink(t, ctx, o)
	ev := created(kinds.Pods, pod("a", "b", "u", "7"))
	publish(t, ctx, s, ev)
	recs := readTopic(t, ctx, o.Brokers, "kubestream.pods")
	if len(recs) != 1 || !proto.Equal(decode(t, recs[0]), ev) {
		t.Fatalf("record value does not decode to the published event")
	}
}
