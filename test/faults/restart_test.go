package faults

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kubestream/kubestream/internal/controlplane"
)

// kafkaCopies is how many copies of each replay marker the Kafka reader
// reads: one per partition of each watched kind's topic (configmaps and
// pods, --kafka-topic-partitions 3).
const kafkaCopies = 2 * 3

// sinkRun is kubestream started with one sink, and the reader of that sink.
type sinkRun struct {
	b *binary
	r *reader
	// copies is how many copies of each replay marker the reader reads.
	copies int
	// state checks that the resume state is in the bus and describes it.
	state func(context.Context, *testing.T) string
}

// startKafkaSink starts a kfake cluster, the reader of its event topics and
// kubestream with the Kafka sink (resume on by default, the state in the
// compacted kubestream.state topic, which the reader leaves alone).
func startKafkaSink(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, ns string) sinkRun {
	t.Helper()
	kc := newKafka(t)
	r := newReader(ctx, t, kc.ListenAddrs())
	return sinkRun{b: startBinary(t, cp.Kubeconfig, kc.ListenAddrs(), ns), r: r, copies: kafkaCopies,
		state: func(ctx context.Context, t *testing.T) string { return kafkaStateTopic(ctx, t, kc.ListenAddrs()) }}
}

// kafkaStateTopic fails the test unless the topic kubestream.state exists
// with cleanup.policy compact, and describes it.
func kafkaStateTopic(ctx context.Context, t *testing.T, brokers []string) string {
	t.Helper()
	const topic = "kubestream.state"
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeTopic
	res.ResourceName = topic
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("describe topic %s: %v", topic, err)
	}
	if len(resp.Resources) != 1 {
		t.Fatalf("describe topic %s: %d resources in the answer", topic, len(resp.Resources))
	}
	if err := kerr.ErrorForCode(resp.Resources[0].ErrorCode); err != nil {
		t.Fatalf("the resume state topic %s: %v", topic, err)
	}
	policy := ""
	for _, c := range resp.Resources[0].Configs {
		if c.Name == "cleanup.policy" && c.Value != nil {
			policy = *c.Value
		}
	}
	if !strings.Contains(policy, "compact") {
		t.Errorf("the resume state topic %s has cleanup.policy %q, want compact", topic, policy)
	}
	// Its size: the end offsets of its partitions.
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	mreq.Topics = append(mreq.Topics, mt)
	meta, err := mreq.RequestWith(ctx, cl)
	if err != nil || len(meta.Topics) != 1 {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	lreq := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	for _, p := range meta.Topics[0].Partitions {
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition = p.Partition
		lp.Timestamp = -1 // the end
		lt.Partitions = append(lt.Partitions, lp)
	}
	lreq.Topics = append(lreq.Topics, lt)
	end, err := lreq.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	records := int64(0)
	for _, rt := range end.Topics {
		for _, p := range rt.Partitions {
			records += p.Offset
		}
	}
	return fmt.Sprintf("topic %s, cleanup.policy %s, %d partitions, %d records", topic, policy, len(meta.Topics[0].Partitions), records)
}

// TestRestartAfterSIGKILLSendsTheDeletes kills kubestream (SIGKILL, no
// shutdown, no last state write) while pods and config maps churn, changes
// objects for 10 s while it is down (50 deletes, 20 same-name re-creates,
// updates and creates), and starts it again with the same flags. The
// restart's first round must be a resume round (REPLAY_REASON_RESUME) that
// does not re-send objects whose position was acknowledged well before the
// kill and that did not change meanwhile, every uid deleted while it was
// down must get its DELETED (final_state_unknown), and at quiescence the
// consumer holds exactly the apiserver's objects, has a DELETED for every
// uid it saw that is gone, and no REPLAY_END removed anything.
func TestRestartAfterSIGKILLSendsTheDeletes(t *testing.T) {
	restartAfterSIGKILL(t, "faults-restart", startKafkaSink)
}

// TestRestartWithNothingChangedSendsNoObjectEvents stops kubestream with
// SIGTERM once its first round and its saved state settled, and starts it
// again with nothing changed: the restart's round is a resume round, and
// neither inside it nor for 3 s after does any object event go out.
func TestRestartWithNothingChangedSendsNoObjectEvents(t *testing.T) {
	ctx, logTook := begin(t, 2*time.Minute)
	const ns = "faults-unchanged"
	f := startPopulated(ctx, t, ns, pool{120, 100}, pool{60, 50})
	cp, client := f.cp, f.client
	truth, err := listTruth(ctx, client, ns)
	if err != nil {
		t.Fatal(err)
	}
	run := startKafkaSink(ctx, t, cp, ns)
	b, r, copies := run.b, run.r, run.copies
	initial := awaitFirstStart(ctx, t, b, r, copies)
	if initial.reason != "INITIAL" {
		t.Errorf("the first start's round has reason %s, want INITIAL (nothing was saved)", initial.reason)
	}
	awaitExact(ctx, t, r, client, ns, b, 60*time.Second, quiescence{settle: time.Second, quiet: time.Second})
	b.awaitSettledState(ctx, t, len(truth), 30*time.Second)

	m := r.mark()
	b.stop(t)
	if t.Failed() {
		t.FailNow()
	}
	b2, rs := restartResumes(ctx, t, b, r, copies, m, 30*time.Second)
	if len(rs.events) != 0 {
		t.Errorf("the restart's round carried %d object events %v for %d unchanged objects, want none:\n%s",
			len(rs.events), rs.ops(), len(truth), firstEvents(rs.events, 10))
	}
	time.Sleep(3 * time.Second)
	b2.alive(t)
	if evs := r.objectEventsSince(m); len(evs) != 0 {
		t.Errorf("%d object events after the stop with nothing changed, want none:\n%s", len(evs), firstEvents(evs, 10))
	}
	v := awaitExact(ctx, t, r, client, ns, b2, 30*time.Second, quiescence{settle: time.Second})
	logFinal(t, r, v, "after the restart")
	t.Logf("restart round: %d object events for %d objects (the initial round had %d); state after the restart: kubestream_state_positions %s",
		len(rs.events), v.apiserver, len(initial.events), b2.metric("kubestream_state_positions"))
	b2.stop(t)
	logTook()
}

// firstEvents lists up to n events, one a line.
func firstEvents(evs []readEvent, n int) string {
	var sb strings.Builder
	for i, e := range evs {
		if i == n {
			fmt.Fprintf(&sb, "  ... %d more\n", len(evs)-n)
			break
		}
		fmt.Fprintf(&sb, "  %s\n", e)
	}
	return sb.String()
}

// restartAfterSIGKILL is TestRestartAfterSIGKILLSendsTheDeletes with the
// sink start decides: it starts the reader and kubestream (after the
// objects exist) and says how many copies of a marker the reader reads.
func restartAfterSIGKILL(t *testing.T, ns string, start func(context.Context, *testing.T, *controlplane.ControlPlane, string) sinkRun) {
	ctx, logTook := begin(t, 3*time.Minute)
	f := startPopulated(ctx, t, ns, pool{240, 190}, pool{130, 100})
	client, pods, cms := f.client, f.pods, f.cms
	run := start(ctx, t, f.cp, ns)
	b, r, copies := run.b, run.r, run.copies
	awaitFirstStart(ctx, t, b, r, copies)

	// Churn, and SIGKILL in the middle of it.
	stop := make(chan struct{})
	wait := churn(ctx, stop, 15, pods, cms)
	time.Sleep(6 * time.Second)
	b.alive(t)
	pods.mu.Lock()
	cms.mu.Lock()
	b.kill(t)
	killedAt := time.Now()
	atKill, err := listTruth(ctx, client, ns)
	close(stop)
	pods.mu.Unlock()
	cms.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILL during churn (%s; %s): %d objects at the kill; resume state in the bus: %s", pods, cms, len(atKill), run.state(ctx, t))

	// 10 s of changes while it is down.
	plan := downtimePlan{deletes: 50, recreates: 20, updates: 30, creates: 20}
	if err := plan.run(ctx, rand.New(rand.NewSource(f.seed+2)), 10*time.Second, pods, cms); err != nil {
		t.Fatal(err)
	}
	afterDown, err := listTruth(ctx, client, ns)
	if err != nil {
		t.Fatal(err)
	}
	var goneWhileDown []string
	for uid := range atKill {
		if _, ok := afterDown[uid]; !ok {
			goneWhileDown = append(goneWhileDown, uid)
		}
	}
	sort.Strings(goneWhileDown)
	t.Logf("while down for %s: %s; %d uids of the kill's objects gone, %d objects now",
		time.Since(killedAt).Round(100*time.Millisecond), &plan, len(goneWhileDown), len(afterDown))

	// Objects whose current resourceVersion the reader had read 3 s before
	// the kill (acknowledged, so their position was saved by the 1 s
	// batches) and that did not change since: a resume must not send them.
	read := r.settledBefore(killedAt.Add(-3 * time.Second))
	settled := map[string]bool{}
	for uid, o := range afterDown {
		if rv, ok := read[uid]; ok && rv == o.rv {
			settled[uid] = true
		}
	}

	m := r.mark()
	b2, rs := restartResumes(ctx, t, b, r, copies, m, 60*time.Second)
	var resent []readEvent
	for _, e := range rs.events {
		if settled[e.ev.GetObject().GetUid()] {
			resent = append(resent, e)
		}
	}
	if len(resent) > 0 {
		t.Errorf("the resume round re-sent %d events of objects acknowledged at least 3 s before the kill and unchanged since:\n%s",
			len(resent), firstEvents(resent, 10))
	}
	if len(rs.events) >= len(afterDown) {
		t.Errorf("the resume round carried %d object events for %d objects: a full snapshot, not the difference", len(rs.events), len(afterDown))
	}

	v := awaitExact(ctx, t, r, client, ns, b2, 60*time.Second, quiescence{settle: 2 * time.Second, quiet: 2 * time.Second})
	seenGone, unseen := 0, 0
	for _, uid := range goneWhileDown {
		r.mu.Lock()
		seen, fsu := len(r.history[uid]) > 0, r.fsuDeletes[uid]
		r.mu.Unlock()
		if !seen {
			unseen++ // its CREATED never went out before the kill
			continue
		}
		seenGone++
		if !fsu {
			t.Errorf("uid %s (%s) deleted while kubestream was down has no DELETED with final_state_unknown; events:%s",
				uid, atKill[uid].key, r.eventsOf(uid))
		}
	}
	t.Logf("resume round: %d object events %v for %d objects (%d of them settled before the kill, %d re-sent); deleted while down: %d uids, %d of them seen by the consumer, each with a DELETED (final_state_unknown), %d never published",
		len(rs.events), rs.ops(), len(afterDown), len(settled), len(resent), len(goneWhileDown), seenGone, unseen)
	if seenGone < 40 {
		t.Errorf("only %d uids the consumer had seen were deleted while kubestream was down: the test did not exercise the deletes", seenGone)
	}
	logFinal(t, r, v, "after the restart")
	t.Logf("duplicate ids %d", r.duplicates())
	b2.stop(t)
	logTook()
}

// downtimePlan is a fixed number of changes, spread evenly over a duration
// and in a random order, on random churners: deletes and same-name
// re-creates of live names, updates of live names, creates of free names.
type downtimePlan struct {
	deletes, recreates, updates, creates int
	done                                 map[string]int
}

func (p *downtimePlan) String() string {
	return fmt.Sprintf("%d deletes, %d same-name re-creates, %d updates, %d creates", p.done["delete"], p.done["recreate"], p.done["update"], p.done["create"])
}

func (p *downtimePlan) run(ctx context.Context, rnd *rand.Rand, over time.Duration, cs ...*churner) error {
	var ops []string
	for op, n := range map[string]int{"delete": p.deletes, "recreate": p.recreates, "update": p.updates, "create": p.creates} {
		for i := 0; i < n; i++ {
			ops = append(ops, op)
		}
	}
	sort.Strings(ops)
	rnd.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	p.done = map[string]int{}
	tick := time.NewTicker(over / time.Duration(len(ops)))
	defer tick.Stop()
	for _, op := range ops {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		// The first churner (in a random order) that can make the change.
		made := false
		for _, i := range rnd.Perm(len(cs)) {
			ok, err := cs[i].plannedChange(ctx, rnd, op)
			if err != nil {
				return err
			}
			if ok {
				made = true
				break
			}
		}
		if !made {
			return fmt.Errorf("no churner could make a %s", op)
		}
		p.done[op]++
	}
	return nil
}

// plannedChange makes one change of kind op on a random name; false when no
// name fits (no live name to delete, no free name to create).
func (c *churner) plannedChange(ctx context.Context, rnd *rand.Rand, op string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var live, free []string
	for i := 0; i < c.names; i++ {
		if n := c.name(i); c.live[n] {
			live = append(live, n)
		} else {
			free = append(free, n)
		}
	}
	pick := func(names []string) string { return names[rnd.Intn(len(names))] }
	switch {
	case op == "create" && len(free) > 0:
		return true, c.create(ctx, pick(free))
	case op == "create", len(live) == 0:
		return false, nil
	case op == "delete":
		return true, c.delete(ctx, pick(live))
	case op == "recreate":
		return true, c.recreate(ctx, pick(live))
	default:
		return true, c.update(ctx, pick(live))
	}
}
