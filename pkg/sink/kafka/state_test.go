package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kubestream/kubestream/pkg/resume"
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

func write(t testing.TB, ctx context.Context, st resume.Store, puts map[string]resume.Entry, deletes ...string) {
	t.Helper()
	if err := st.Write(ctx, puts, deletes); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func load(t testing.TB, ctx context.Context, st resume.Store) map[string]resume.Entry {
	t.Helper()
	got, err := st.Load(ctx)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return got
}

func wantState(t testing.TB, got, want map[string]resume.Entry) {
	t.Helper()
	if maps.Equal(got, want) {
		return
	}
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("missing %s (want %+v)", k, w)
		} else if g != w {
			t.Errorf("%s = %+v, want %+v", k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s = %+v", k, g)
		}
	}
	t.FailNow()
}

func entry(uid, rv string) resume.Entry { return resume.Entry{UID: uid, ResourceVersion: rv} }

// awkwardKeys are object keys with dots, empty namespaces and characters
// that mean something elsewhere (NATS subjects, key separators).
var awkwardKeys = map[string]resume.Entry{
	"pods/default/web-0":                         entry("u1", "100"),
	"configmaps/kube-system/kube-root-ca.crt":    entry("u2", "101"),
	"nodes//ip-10-0-0-1.ec2.internal":            entry("u3", "102"),
	"nodes//node-a":                              entry("u4", "103"),
	"deployments/team.a/api.v2":                  entry("u5", "104"),
	"configmaps/default/dots...and-dashes_under": entry("u6", "105"),
	// Store keys are opaque: the tracker may add the uid.
	"pods/default/web-1/0b3c6d2e-1111-4a5b-9c3d-000000000001": entry("0b3c6d2e-1111-4a5b-9c3d-000000000001", "106"),
	"nodes//node-b/0b3c6d2e-1111-4a5b-9c3d-000000000002":      entry("0b3c6d2e-1111-4a5b-9c3d-000000000002", ""),
	"odd/key with spaces/%2F/and/more/slashes":                entry("u9", "107"),
}

func TestStateStoreRoundTrip(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	s := openSink(t, ctx, testOptions(c))
	st := stateStore(t, ctx, s, "prod")
	wantState(t, load(t, ctx, st), map[string]resume.Entry{})
	write(t, ctx, st, awkwardKeys)
	wantState(t, load(t, ctx, st), awkwardKeys)

	// The records are what docs/kafka.md says: <cluster>/<object key>,
	// {"v":1,...}; every record of a key in one partition.
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

func TestStateStoreLaterWritesWinAndDeletesRemove(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	s := openSink(t, ctx, testOptions(c))
	st := stateStore(t, ctx, s, "prod")
	model := resume.NewMemoryStore()
	steps := []struct {
		puts    map[string]resume.Entry
		deletes []string
	}{
		{puts: map[string]resume.Entry{"pods/a/x": entry("1", "1"), "pods/a/y": entry("2", "1"), "nodes//n.1": entry("3", "1")}},
		{puts: map[string]resume.Entry{"pods/a/x": entry("1", "2")}, deletes: []string{"pods/a/y"}},
		// A delete of something never written, and a re-create under a new uid.
		{puts: map[string]resume.Entry{"pods/a/y": entry("4", "7")}, deletes: []string{"pods/b/never", "nodes//n.1"}},
		{deletes: []string{"pods/a/x"}},
		{puts: map[string]resume.Entry{"nodes//n.1": entry("5", "9"), "pods/a/x": entry("6", "10")}},
		// Put and delete of one key in one batch: the put wins, as in the
		// memory store.
		{puts: map[string]resume.Entry{"pods/a/z": entry("7", "11")}, deletes: []string{"pods/a/z", "pods/a/y"}},
	}
	for i, step := range steps {
		write(t, ctx, st, step.puts, step.deletes...)
		if err := model.Write(ctx, step.puts, step.deletes); err != nil {
			t.Fatal(err)
		}
		want, _ := model.Load(ctx)
		t.Logf("step %d: %d positions", i, len(want))
		wantState(t, load(t, ctx, st), want)
	}
}

func TestStateStoreReopenedLoadsTheSame(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	s1 := openSink(t, ctx, o)
	st1 := stateStore(t, ctx, s1, "prod")
	write(t, ctx, st1, awkwardKeys)
	write(t, ctx, st1, map[string]resume.Entry{"pods/default/web-0": entry("u1", "200")}, "nodes//node-a")
	want := load(t, ctx, st1)

	// Another process (a restart, or the replica that takes over) with a
	// topic that exists now, even without --kafka-create-topics.
	o.CreateTopics = false
	s2 := openSink(t, ctx, o)
	st2 := stateStore(t, ctx, s2, "prod")
	wantState(t, load(t, ctx, st2), want)
	if _, ok := want["nodes//node-a"]; ok || want["pods/default/web-0"].ResourceVersion != "200" {
		t.Fatalf("first store loaded %v", want)
	}
}

func TestStateStoreClustersAreIsolated(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	s := openSink(t, ctx, testOptions(c))
	// "prod/eu" starts with "prod/": it must still not leak into "prod",
	// whatever the store keys look like.
	clusters := []string{"prod", "prod/eu", "staging", "prod%2Feu"}
	stores := map[string]resume.Store{}
	for _, cl := range clusters {
		stores[cl] = stateStore(t, ctx, s, cl)
	}
	own := func(i int, cl string) map[string]resume.Entry {
		name := strings.ReplaceAll(cl, "/", "-") // names have no slashes
		return map[string]resume.Entry{
			"pods/default/web-0":         entry(cl+"-u", fmt.Sprint(i)),
			"pods/eu/only-" + name:       entry(cl+"-v", "1"),
			"nodes//node." + name + ".x": entry(cl+"-w", "1"),
			"eu/pods/default/web-0":      entry(cl+"-x", "1"),
		}
	}
	for i, cl := range clusters {
		write(t, ctx, stores[cl], own(i, cl))
	}
	write(t, ctx, stores["staging"], nil, "pods/default/web-0")
	for i, cl := range clusters {
		want := own(i, cl)
		if cl == "staging" {
			delete(want, "pods/default/web-0")
		}
		wantState(t, load(t, ctx, stores[cl]), want)
	}
}

func TestStateStoreTenThousandPutsInOneWrite(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	s := openSink(t, ctx, testOptions(c))
	st := stateStore(t, ctx, s, "prod")
	puts := make(map[string]resume.Entry, 10000)
	for i := range 10000 {
		puts[fmt.Sprintf("pods/ns-%d/pod-%d.abc", i%37, i)] = entry(fmt.Sprintf("0b3c6d2e-%08d", i), fmt.Sprint(1000000+i))
	}
	start := time.Now()
	write(t, ctx, st, puts)
	wrote := time.Since(start)
	start = time.Now()
	got := load(t, ctx, st)
	loaded := time.Since(start)
	t.Logf("Kafka (kfake, 3 brokers, 3 partitions): Write of 10,000 puts %s, Load of 10,000 positions %s", wrote, loaded)
	wantState(t, got, puts)
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
	write(t, ctx, st, awkwardKeys)
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
	wantState(t, load(t, ctx, st2), map[string]resume.Entry{})
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
		write(t, ctx, st, puts, deletes...)
		model.Write(ctx, puts, deletes)
	}
	for round := range 5 {
		puts := map[string]resume.Entry{}
		for i := range 40 {
			puts[fmt.Sprintf("pods/ns/p-%d", i)] = entry(fmt.Sprint(i), fmt.Sprint(round))
		}
		apply(puts)
	}
	var dels []string
	for i := 0; i < 40; i += 3 {
		dels = append(dels, fmt.Sprintf("pods/ns/p-%d", i))
	}
	apply(nil, dels...)
	apply(map[string]resume.Entry{"pods/ns/p-1": entry("1", "last")})
	before := countRecords(t, ctx, c, "kubestream.state")
	c.Compact()
	after := countRecords(t, ctx, c, "kubestream.state")
	t.Logf("state topic: %d records before compaction, %d after", before, after)
	if after >= before {
		t.Fatalf("compaction removed nothing (%d records before, %d after)", before, after)
	}
	want, _ := model.Load(ctx)
	wantState(t, load(t, ctx, st), want)
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
		puts[fmt.Sprintf("pods/ns/p-%d", i)] = entry(fmt.Sprint(i), "1")
	}
	write(t, ctx, st1, puts)

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
	wantState(t, load(t, ctx, st2), puts)
	var others []string
	for k := range puts {
		if k != "pods/ns/p-0" {
			others = append(others, k)
		}
	}
	write(t, ctx, st2, map[string]resume.Entry{"pods/ns/p-0": entry("0", "2")}, others...)
	// A second batch, so compaction may clean the first ones.
	write(t, ctx, st2, map[string]resume.Entry{"pods/ns/new": entry("n", "1")})
	c.Compact()
	wantState(t, load(t, ctx, st2), map[string]resume.Entry{"pods/ns/p-0": entry("0", "2"), "pods/ns/new": entry("n", "1")})
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
	err = st.Write(wctx, map[string]resume.Entry{"pods/a/b": entry("1", "1")}, nil)
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
	write(t, ctx, st, map[string]resume.Entry{"pods/shop/web-0/uid-1": entry("uid-1", "48213")})
	write(t, ctx, st, map[string]resume.Entry{"nodes//node-1/uid-2": entry("uid-2", "")})
	write(t, ctx, st, nil, "nodes//node-1/uid-2")
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
