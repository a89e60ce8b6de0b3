package kafka_test

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"

	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/sink/kafka"
)

// topicRequests counts what the sink asks of the broker about topics:
// CreateTopics requests and metadata requests that allow automatic
// creation. The counters only observe; kfake handles the requests.
type topicRequests struct{ creates, autoCreates atomic.Int32 }

func countTopicRequests(c *kfake.Cluster) *topicRequests {
	n := &topicRequests{}
	c.ControlKey(int16(kmsg.CreateTopics), func(kmsg.Request) (kmsg.Response, error, bool) {
		n.creates.Add(1)
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.Metadata), func(r kmsg.Request) (kmsg.Response, error, bool) {
		if r.(*kmsg.MetadataRequest).AllowAutoTopicCreation {
			n.autoCreates.Add(1)
		}
		return nil, nil, false
	})
	return n
}

// streamOptions are testOptions with topic creation off and the streams
// kubestream passes with --kinds configmaps,pods and image storage on.
func streamOptions(c *kfake.Cluster) kafka.Options {
	o := testOptions(c)
	o.CreateTopics = false
	o.Streams = []string{"configmaps", "pods", kinds.ImageStorage}
	return o
}

func TestOpenCreatesMissingTopics(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, kfake.SeedTopics(2, "kubestream.configmaps"))
	o := streamOptions(c)
	o.CreateTopics = true
	o.Partitions = 3
	openSink(t, ctx, o)

	for topic, want := range map[string]int{"kubestream.configmaps": 2, "kubestream.pods": 3, "kubestream.imagestorage": 3} {
		if n := partitionCount(t, ctx, o.Brokers, topic); n != want {
			t.Errorf("%s has %d partitions after Open, want %d", topic, n, want)
		}
	}
	if n := partitionCount(t, ctx, o.Brokers, "kubestream.nodes"); n != 0 {
		t.Errorf("Open created kubestream.nodes, which no stream needs")
	}
}

func TestOpenLeavesMissingTopicsToBrokerAutoCreation(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4), kfake.SeedTopics(2, "kubestream.pods"))
	o := streamOptions(c)
	reqs := countTopicRequests(c)
	s := openSink(t, ctx, o)

	if n := reqs.creates.Load(); n != 0 {
		t.Errorf("Open sent %d CreateTopics requests without --kafka-create-topics", n)
	}
	for topic, want := range map[string]int{"kubestream.pods": 2, "kubestream.configmaps": 4, "kubestream.imagestorage": 4} {
		if n := partitionCount(t, ctx, o.Brokers, topic); n != want {
			t.Errorf("%s has %d partitions after Open, want %d", topic, n, want)
		}
	}
	cm := created(kinds.ConfigMaps, configMap("shop", "settings", "u1", "1", map[string]string{"k": "v"}))
	is := imageStorage(node("node-1", "u2", "1"))
	publish(t, ctx, s, cm, is)
	for topic, key := range map[string]string{
		"kubestream.configmaps":   "configmaps/shop/settings",
		"kubestream.imagestorage": "imagestorage/node-1",
	} {
		recs := readTopic(t, ctx, o.Brokers, topic)
		if len(recs) != 1 || string(recs[0].Key) != key {
			t.Fatalf("%s holds %v, want one record %s", topic, keysOf(recs), key)
		}
	}
	if recs := readTopic(t, ctx, o.Brokers, "kubestream.configmaps"); !proto.Equal(decode(t, recs[0]), cm) {
		t.Errorf("record in kubestream.configmaps does not decode to the published event")
	}
}

func TestOpenFailsOnMissingTopicsTheBrokerDoesNotCreate(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, kfake.SeedTopics(2, "kubestream.configmaps"))
	o := streamOptions(c)
	reqs := countTopicRequests(c)
	start := time.Now()
	_, err := kafka.Open(ctx, o)
	took := time.Since(start)
	if !errors.Is(err, kafka.ErrMissingTopics) {
		t.Fatalf("Open: %v, want ErrMissingTopics", err)
	}
	msg := err.Error()
	t.Logf("Open: %s", msg)
	want := "Kafka topics kubestream.imagestorage, kubestream.pods do not exist and the broker does not create topics automatically: create them (see docs/kafka.md), or run with --kafka-create-topics"
	if msg != want {
		t.Errorf("error\n%s\nwant\n%s", msg, want)
	}
	if strings.Contains(msg, "kubestream.configmaps") || strings.Contains(msg, "\n") {
		t.Errorf("error names an existing topic or spans lines: %q", msg)
	}
	var mt *kafka.MissingTopicsError
	if !errors.As(err, &mt) || strings.Join(mt.Topics, ",") != "kubestream.imagestorage,kubestream.pods" {
		t.Errorf("MissingTopicsError.Topics = %v", mt)
	}
	if reqs.autoCreates.Load() == 0 {
		t.Errorf("Open did not ask the broker to create the topics automatically")
	}
	if reqs.creates.Load() != 0 {
		t.Errorf("Open sent CreateTopics without --kafka-create-topics")
	}
	// The broker's "unknown topic" to a request allowing creation is its
	// final word: no waiting for topics that will not come.
	if took > kafka.AutoCreateWait {
		t.Errorf("Open took %s to fail, want less than %s", took, kafka.AutoCreateWait)
	}

	t.Run("one topic", func(t *testing.T) {
		o := o
		o.Topic = "everything"
		_, err := kafka.Open(ctx, o)
		want := "Kafka topic everything does not exist and the broker does not create topics automatically: create it (see docs/kafka.md), or run with --kafka-create-topics"
		if !errors.Is(err, kafka.ErrMissingTopics) || err.Error() != want {
			t.Errorf("Open in single-topic mode: %v, want %s", err, want)
		}
	})
}

func TestOpenWithAllTopicsPresentCreatesNothing(t *testing.T) {
	for _, create := range []bool{false, true} {
		t.Run(map[bool]string{false: "without creation", true: "with creation"}[create], func(t *testing.T) {
			ctx := testContext(t)
			c := newCluster(t, kfake.AllowAutoTopicCreation(),
				kfake.SeedTopics(2, "kubestream.configmaps", "kubestream.pods", "kubestream.imagestorage"))
			o := streamOptions(c)
			o.CreateTopics = create
			reqs := countTopicRequests(c)
			s := openSink(t, ctx, o)
			if n, m := reqs.creates.Load(), reqs.autoCreates.Load(); n != 0 || m != 0 {
				t.Errorf("Open sent %d CreateTopics and %d auto-creating metadata requests, want none", n, m)
			}
			// Checked topics need no look-up when the first events come.
			publish(t, ctx, s, created(kinds.Pods, pod("a", "p", "u1", "1")),
				marker(change.ReplayBegin, "round-1", "pods", "configmaps"))
			if n, m := reqs.creates.Load(), reqs.autoCreates.Load(); n != 0 || m != 0 {
				t.Errorf("Publish sent %d CreateTopics and %d auto-creating metadata requests, want none", n, m)
			}
			if n := partitionCount(t, ctx, o.Brokers, "kubestream.nodes"); n != 0 {
				t.Errorf("kubestream.nodes exists: nothing needed it")
			}
		})
	}
}

// A marker over nodes reaches the image-storage topic when image storage is
// a stream; when it is off, the topic is not needed, even with creation.
func TestImageStorageTopicFollowsTheStreams(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	o.Streams = []string{"nodes"}
	s := openSink(t, ctx, o)
	publish(t, ctx, s, marker(change.ReplayBegin, "round-1", "nodes"))
	if n := partitionCount(t, ctx, o.Brokers, "kubestream.imagestorage"); n != 0 {
		t.Errorf("image storage is off, yet kubestream.imagestorage was created")
	}

	o.Streams = []string{"nodes", kinds.ImageStorage}
	s = openSink(t, ctx, o)
	publish(t, ctx, s, marker(change.ReplayBegin, "round-2", "nodes"))
	if n := len(readTopic(t, ctx, o.Brokers, "kubestream.imagestorage")); n != o.Partitions {
		t.Errorf("kubestream.imagestorage holds %d marker copies, want one per partition (%d)", n, o.Partitions)
	}
}

// At run time, a topic nobody checked at Open (or deleted since) is left to
// the broker's automatic creation too.
func TestPublishAsksBrokerToCreateMissingTopic(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, kfake.AllowAutoTopicCreation())
	o := testOptions(c)
	o.CreateTopics = false
	s := openSink(t, ctx, o)
	publish(t, ctx, s, created(kinds.Deployments, deployment("a", "d", "u1", "1")))
	if recs := readTopic(t, ctx, o.Brokers, "kubestream.deployments"); len(recs) != 1 {
		t.Errorf("kubestream.deployments holds %d records, want 1", len(recs))
	}
}

// A real broker answers the first request for a topic it creates
// automatically with LEADER_NOT_AVAILABLE: Open keeps asking until the
// topic has partitions.
func TestOpenWaitsForAutoCreatedTopics(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, kfake.AllowAutoTopicCreation(), kfake.SeedTopics(2, "kubestream.configmaps", "kubestream.imagestorage"))
	var answered atomic.Int32
	c.ControlKey(int16(kmsg.Metadata), func(r kmsg.Request) (kmsg.Response, error, bool) {
		req := r.(*kmsg.MetadataRequest)
		if !req.AllowAutoTopicCreation || answered.Load() >= 2 {
			return nil, nil, false
		}
		c.KeepControl()
		answered.Add(1)
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewMetadataResponseTopic()
			st.Topic = rt.Topic
			st.ErrorCode = kerr.LeaderNotAvailable.Code
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	o := streamOptions(c)
	openSink(t, ctx, o)
	if n := answered.Load(); n != 2 {
		t.Errorf("broker said LEADER_NOT_AVAILABLE %d times, want 2", n)
	}
	if n := partitionCount(t, ctx, o.Brokers, "kubestream.pods"); n == 0 {
		t.Errorf("kubestream.pods does not exist after Open")
	}
}

// A broker that refuses CreateTopics (policy, permissions) stops Open with
// its reason: the user's to fix, like a broker that creates nothing.
func TestOpenReportsRefusedCreation(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, kfake.SeedTopics(2, "kubestream.configmaps", "kubestream.imagestorage"))
	c.ControlKey(int16(kmsg.CreateTopics), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := r.(*kmsg.CreateTopicsRequest)
		resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewCreateTopicsResponseTopic()
			st.Topic = rt.Topic
			st.ErrorCode = kerr.PolicyViolation.Code
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	o := streamOptions(c)
	o.CreateTopics = true
	_, err := kafka.Open(ctx, o)
	if !errors.Is(err, kafka.ErrMissingTopics) {
		t.Fatalf("Open: %v, want ErrMissingTopics", err)
	}
	t.Logf("Open: %s", err)
	for _, want := range []string{"Kafka topic kubestream.pods does not exist", "Policy Violation", "--kafka-topic-*", "create it (see docs/kafka.md)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %s", want, err)
		}
	}
}
