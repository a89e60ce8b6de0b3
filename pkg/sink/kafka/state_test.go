package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kubestream/kubestream/pkg/resume"
	"github.com/kubestream/kubestream/pkg/resume/resumetest"
	"github.com/kubestream/kubestream/pkg/sink/kafka"
)

func stateStore(t testing.TB, ctx context.Context, s *kafka.Sink, cluster string) resume.Store {
	t.Helper()
	st, err := s.StateStore(ctx, cluster)
	if err != nil {
		t.Fatalf("StateStore(%q): %v", cluster, err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close state store: %v", err)
		}
	})
	return st
}

// TestStateStoreConformance runs the suite every store passes, each
// subtest on a new kfake cluster (3 brokers, 3-partition topics). Every
// open is a new sink (another process, or the replica that takes over);
// all but the first run without --kafka-create-topics, so they use the
// topic that exists by then.
func TestStateStoreConformance(t *testing.T) {
	t.Log("Kafka: kfake, 3 brokers, 3 partitions")
	resumetest.Conformance(t, func(t *testing.T) resumetest.Open {
		o := testOptions(newCluster(t))
		return func(t *testing.T, cluster string) resume.Store {
			ctx := testContext(t)
			s := openSink(t, ctx, o)
			o.CreateTopics = false
			return stateStore(t, ctx, s, cluster)
		}
	})
}

// TestStateRecordLayout: the records are what docs/kafka.md says:
// <cluster>/<store key>, {"v":1,...}; every record of a key in one
// partition.
func TestStateRecordLayout(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	s := openSink(t, ctx, testOptions(c))
	st := stateStore(t, ctx, s, "prod")
	awkwardKeys := resumetest.AwkwardKeys()
	resumetest.Write(t, ctx, st, awkwardKeys)
	resumetest.WantState(t, resumetest.Load(t, ctx, st), awkwardKeys)

	recs := readTopic(t, ctx, c.ListenAddrs(), "kubestream.state")
	if len(recs) != len(awkwardKeys) {
		t.Fatalf("state topic holds %d records, want %d", len(recs), len(awkwardKeys))
	}
	for _, r := range recs {
		k, ok := strings.CutPrefix(string(r.Key), "prod/")
		if !ok {
			t.Fatalf("record key %q does not start with the cluster", r.Key)
		}
		if want := string(resume.Encode(awkwardKeys[k])); string(r.Value) != want {
			t.Errorf("record %s = %s, want %s", r.Key, r.Value, want)
		}
		if !strings.HasPrefix(string(r.Value), `{"v":1,`) {
			t.Errorf("record %s = %s: not the versioned format", r.Key, r.Value)
		}
	}
}

func TestStateStoreMissingTopicWithoutCreation(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t) // refuses automatic topic creation
	o := testOptions(c)
	o.CreateTopics = false
	s := openSink(t, ctx, o)
	_, err := s.StateStore(ctx, "prod")
	if err == nil {
		t.Fatal("StateStore on a broker without the state topic succeeded")
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	if !errors.Is(err, kafka.ErrMissingTopics) {
		t.Errorf("error does not match ErrMissingTopics: %v", err)
	}
	for _, want := range []string{"kubestream.state", "cleanup.policy=compact", "--kafka-create-topics", "--resume=false"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	if n := partitionCount(t, ctx, c.ListenAddrs(), "kubestream.state"); n != 0 {
		t.Errorf("the state topic was created (%d partitions) without --kafka-create-topics", n)
	}
}

func TestStateStoreCreatesCompactedTopic(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	o.Topic = "everything" // single-topic mode: the state topic still follows the prefix
	o.TopicPrefix = "k8s"
	o.CleanupPolicy = "compact"
	o.TopicConfig = []string{"cleanup.policy=delete", "retention.ms=3600000"}
	s := openSink(t, ctx, o)
	st := stateStore(t, ctx, s, "prod")
	resumetest.Write(t, ctx, st, resumetest.AwkwardKeys())
	if got := topicConfig(t, ctx, c, "k8s.state", "cleanup.policy"); got != "compact" {
		t.Errorf("created state topic has cleanup.policy=%q, want compact", got)
	}
	if n := partitionCount(t, ctx, c.ListenAddrs(), "k8s.state"); n != o.Partitions {
		t.Errorf("created state topic has %d partitions, want --kafka-topic-partitions %d", n, o.Partitions)
	}

	// --kafka-state-topic names another.
	o.StateTopic = "resume-positions"
	s2 := openSink(t, ctx, o)
	st2 := stateStore(t, ctx, s2, "prod")
	resumetest.WantState(t, resumetest.Load(t, ctx, st2), map[string]resume.Entry{})
	if got := topicConfig(t, ctx, c, "resume-positions", "cleanup.policy"); got != "compact" {
		t.Errorf("created state topic has cleanup.policy=%q, want compact", got)
	}
}

func TestStateStoreRefusesTopicWithoutCompaction(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, kfake.SeedTopics(3, "kubestream.state"))
	if got := topicConfig(t, ctx, c, "kubestream.state", "cleanup.policy"); got != "delete" {
		t.Fatalf("kfake seeded the topic with cleanup.policy=%q, want delete", got)
	}
	s := openSink(t, ctx, testOptions(c))
	_, err := s.StateStore(ctx, "prod")
	if !errors.Is(err, kafka.ErrStateTopicNotCompacted) {
		t.Fatalf("StateStore on a topic with cleanup.policy=delete: %v, want ErrStateTopicNotCompacted", err)
	}
	t.Logf("error: %v", err)
	for _, want := range []string{"kubestream.state", "cleanup.policy=delete", "cleanup.policy=compact", "--resume=false"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q", want)
		}
	}
}

// TestStateStoreAfterCompaction reads the topic after the broker compacted
// it (offset gaps, expired tombstones removed).
func TestStateStoreAfterCompaction(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	o.TopicConfig = []string{"delete.retention.ms=0"}
	s := openSink(t, ctx, o)
	st := stateStore(t, ctx, s, "prod")
	model := resume.NewMemoryStore()
	apply := func(puts map[string]resume.Entry, deletes ...string) {
		resumetest.Write(t, ctx, st, puts, deletes...)
		model.Write(ctx, puts, deletes)
	}
	for round := range 5 {
		puts := map[string]resume.Entry{}
		for i := range 40 {
			puts[fmt.Sprintf("pods/ns/p-%d", i)] = resumetest.Entry(fmt.Sprint(i), fmt.Sprint(round))
		}
		apply(puts)
	}
	var dels []string
	for i := 0; i < 40; i += 3 {
		dels = append(dels, fmt.Sprintf("pods/ns/p-%d", i))
	}
	apply(nil, dels...)
	apply(map[string]resume.Entry{"pods/ns/p-1": resumetest.Entry("1", "last")})
	before := countRecords(t, ctx, c, "kubestream.state")
	c.Compact()
	after := countRecords(t, ctx, c, "kubestream.state")
	t.Logf("state topic: %d records before compaction, %d after", before, after)
	if after >= before {
		t.Fatalf("compaction removed nothing (%d records before, %d after)", before, after)
	}
	want, _ := model.Load(ctx)
	resumetest.WantState(t, resumetest.Load(t, ctx, st), want)
}

// TestStateStorePartitionsAdded: after partitions were added to the state
// topic, keys hash elsewhere. Load still returns the latest values and moves
// the stale copies, so a later removal is not undone when compaction drops
// its tombstone.
func TestStateStorePartitionsAdded(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	o.Partitions = 2
	o.TopicConfig = []string{"delete.retention.ms=0"}
	s1 := openSink(t, ctx, o)
	st1 := stateStore(t, ctx, s1, "prod")
	puts := map[string]resume.Entry{}
	for i := range 60 {
		puts[fmt.Sprintf("pods/ns/p-%d", i)] = resumetest.Entry(fmt.Sprint(i), "1")
	}
	resumetest.Write(t, ctx, st1, puts)

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreatePartitionsRequest()
	rt := kmsg.NewCreatePartitionsRequestTopic()
	rt.Topic, rt.Count = "kubestream.state", 6
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("create partitions: %v", err)
	}

	s2 := openSink(t, ctx, o)
	st2 := stateStore(t, ctx, s2, "prod")
	resumetest.WantState(t, resumetest.Load(t, ctx, st2), puts)
	var others []string
	for k := range puts {
		if k != "pods/ns/p-0" {
			others = append(others, k)
		}
	}
	resumetest.Write(t, ctx, st2, map[string]resume.Entry{"pods/ns/p-0": resumetest.Entry("0", "2")}, others...)
	// A second batch, so compaction may clean the first ones.
	resumetest.Write(t, ctx, st2, map[string]resume.Entry{"pods/ns/new": resumetest.Entry("n", "1")})
	c.Compact()
	resumetest.WantState(t, resumetest.Load(t, ctx, st2), map[string]resume.Entry{"pods/ns/p-0": resumetest.Entry("0", "2"), "pods/ns/new": resumetest.Entry("n", "1")})
}

func TestStateStoreWriteFailsWhenTheBrokerIsGone(t *testing.T) {
	ctx := testContext(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions(c)
	o.WriteTimeout = 2 * time.Second
	o.DialTimeout = time.Second
	s, err := kafka.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.StateStore(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = st.Write(wctx, map[string]resume.Entry{"pods/a/b": resumetest.Entry("1", "1")}, nil)
	if err == nil {
		t.Fatal("Write to a stopped broker succeeded")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "kubestream.state") {
		t.Errorf("error does not name the topic: %v", err)
	}
	st.Close()
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	s.Close(cctx)
}

// topicConfig returns a topic's config value as the broker describes it.
func topicConfig(t testing.TB, ctx context.Context, c *kfake.Cluster, topic, name string) string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDescribeConfigsRequest()
	r := kmsg.NewDescribeConfigsRequestResource()
	r.ResourceType, r.ResourceName, r.ConfigNames = kmsg.ConfigResourceTypeTopic, topic, []string{name}
	req.Resources = append(req.Resources, r)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range resp.Resources {
		if err := kerr.ErrorForCode(res.ErrorCode); err != nil {
			t.Fatalf("describe %s: %v", topic, err)
		}
		for _, e := range res.Configs {
			if e.Name == name && e.Value != nil {
				return *e.Value
			}
		}
	}
	return ""
}

// countRecords counts the records of topic up to its end offsets; unlike
// readTopic it copes with the gaps compaction leaves (the last record of
// each partition is never compacted away in kfake: it is the active batch).
func countRecords(t testing.TB, ctx context.Context, c *kfake.Cluster, topic string) int {
	t.Helper()
	adm, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ends := endOffsets(t, ctx, adm, topic)
	parts := map[int32]kgo.Offset{}
	for p, end := range ends {
		if end > 0 {
			parts[p] = kgo.NewOffset().AtStart()
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	done := map[int32]bool{}
	for len(done) < len(parts) {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("count %s: %d records before the test deadline", topic, n)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[r.Partition] {
				n++
			}
			if r.Offset >= ends[r.Partition]-1 {
				done[r.Partition] = true
			}
		})
	}
	return n
}

func TestStateTopicOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*kafka.Options)
		topic  string // StateTopicName when valid
		want   string // substring of the error; "" means valid
	}{
		{"default", func(*kafka.Options) {}, "kubestream.state", ""},
		{"prefix", func(o *kafka.Options) { o.TopicPrefix = "k8s.prod" }, "k8s.prod.state", ""},
		{"single-topic mode keeps the prefix", func(o *kafka.Options) { o.Topic = "events" }, "kubestream.state", ""},
		{"flag", func(o *kafka.Options) { o.StateTopic = "positions" }, "positions", ""},
		{"invalid", func(o *kafka.Options) { o.StateTopic = "a/b" }, "", "--kafka-state-topic"},
		{"the single topic", func(o *kafka.Options) { o.Topic, o.StateTopic = "events", "events" }, "", "compacted topic of its own"},
		{"the single topic is the default", func(o *kafka.Options) { o.Topic = "kubestream.state" }, "", "--kafka-state-topic"},
		{"an events topic", func(o *kafka.Options) { o.StateTopic = "kubestream.pods" }, "", "events topic of pods"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := kafka.NewOptions()
			o.Brokers = []string{"kafka-0:9092"}
			tc.change(&o)
			err := o.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v, want valid", err)
			case tc.want != "" && err == nil:
				t.Errorf("Validate: valid, want error with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("Validate: %v, want error with %q", err, tc.want)
			}
			if tc.want == "" && o.StateTopicName() != tc.topic {
				t.Errorf("StateTopicName() = %q, want %q", o.StateTopicName(), tc.topic)
			}
		})
	}
}

// TestStateTopicReadableWithKcat reads the state topic with kcat, as
// docs/kafka.md shows: keys and versioned JSON values, tombstones null.
func TestStateTopicReadableWithKcat(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat is not installed (apt-get install kcat): %v", err)
	}
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	o.Partitions = 1 // kcat's output order is the write order
	s := openSink(t, ctx, o)
	st := stateStore(t, ctx, s, "prod")
	resumetest.Write(t, ctx, st, map[string]resume.Entry{"pods/shop/web-0/uid-1": resumetest.Entry("uid-1", "48213")})
	resumetest.Write(t, ctx, st, map[string]resume.Entry{"nodes//node-1/uid-2": resumetest.Entry("uid-2", "")})
	resumetest.Write(t, ctx, st, nil, "nodes//node-1/uid-2")
	out := run(t, ctx, nil, "kcat", "-C", "-b", o.Brokers[0], "-t", "kubestream.state", "-o", "beginning", "-e", "-q", "-Z", "-f", `%k %s\n`)
	t.Logf("kcat -C -t kubestream.state -Z -f '%%k %%s\\n':\n%s", out)
	want := `prod/pods/shop/web-0/uid-1 {"v":1,"uid":"uid-1","rv":"48213"}
prod/nodes//node-1/uid-2 {"v":1,"uid":"uid-2","rv":""}
prod/nodes//node-1/uid-2 NULL
`
	if string(out) != want {
		t.Errorf("kcat printed:\n%s\nwant:\n%s", out, want)
	}
}
