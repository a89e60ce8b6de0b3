package faults

import (
	"context"
	"net/http"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// Lease settings of the failover test: short for speed, renew deadline
// below the lease duration as kube-controller-manager requires.
//
// client-go's elector tries to acquire or renew every retry period with a
// jitter of 1.2 (every 1 to 2.2 s), and a standby counts the lease duration
// from when it last saw the record change. So after a SIGKILL the standby
// acquires between leaseDuration-2.2s and leaseDuration+2.2s after the kill;
// after a SIGTERM that released the lease, within 2.2 s. With 8 s the two
// ranges (5.8 to 10.2 s, 0 to 2.2 s) are apart, and half the lease
// duration tells a released lease from one that merely expired.
const (
	leaseDuration = 8 * time.Second
	renewDeadline = 5 * time.Second
	retryPeriod   = time.Second
	// takeoverMargin is allowed on top of the lease duration after a
	// SIGKILL: one jittered retry period (2.2 s), loading the state and
	// publishing the first round, on a loaded machine.
	takeoverMargin = 5 * time.Second
)

// TestLeaderFailoverDuringChurn runs two kubestream replicas with
// --leader-elect (same admin kubeconfig, the Lease in namespace default,
// distinct --instance and --listen-address) while pods and config maps
// churn.
//
// SIGKILL: the leader (kubestream_leader 1) is killed; the standby must
// publish within the lease duration plus a margin (measured from the kill to
// the first event read with the standby's instance), and the consumer must
// end exact: every change made while nobody led arrives, every uid deleted
// meanwhile gets its DELETED.
//
// SIGTERM handover: the killed replica comes back as a standby, then the
// current leader gets SIGTERM. It must exit 0 after releasing the lease, so
// the other publishes within a few seconds, well under the lease duration;
// no event of the old leader may follow the new leader's first event in any
// partition (one writer at a time), and the consumer ends exact again.
func TestLeaderFailoverDuringChurn(t *testing.T) {
	ctx, logTook := begin(t, 3*time.Minute)
	const ns = "faults-failover"
	f := startPopulated(ctx, t, ns, pool{150, 100}, pool{80, 50})
	cp, client := f.cp, f.client
	kc := newKafka(t)
	r := newReader(ctx, t, kc.ListenAddrs())
	replica := func(instance string) *binary {
		return startBinary(t, cp.Kubeconfig, kc.ListenAddrs(), ns, "--instance", instance,
			"--leader-elect", "--leader-elect-resource-namespace", "default",
			"--leader-elect-lease-duration", leaseDuration.String(),
			"--leader-elect-renew-deadline", renewDeadline.String(),
			"--leader-elect-retry-period", retryPeriod.String())
	}
	replicas := map[string]*binary{"replica-a": replica("replica-a"), "replica-b": replica("replica-b")}
	leaderName, standbyName := awaitLeader(ctx, t, replicas, 60*time.Second)
	leader, standby := replicas[leaderName], replicas[standbyName]
	t.Logf("%s leads, %s stands by", leaderName, standbyName)
	leader.awaitReadyz(ctx, t, http.StatusOK, 60*time.Second, "the leader after its first round")
	initial := r.awaitRound(ctx, t, mark{}, kafkaCopies, leader, 60*time.Second, "the leader's first round")
	if initial.instance != leaderName {
		t.Fatalf("the first round was published by %q, the leader is %s", initial.instance, leaderName)
	}
	standby.awaitReadyz(ctx, t, http.StatusOK, 60*time.Second, "the synced standby")
	if v, _ := standby.metricValue("kubestream_leader"); v != 0 {
		t.Fatalf("standby %s reports kubestream_leader %v", standbyName, v)
	}

	// SIGKILL the leader during churn.
	ch := startChurn(ctx, t, 10, f.pods, f.cms)
	time.Sleep(4 * time.Second)
	leader.alive(t)
	m := r.mark()
	leader.kill(t)
	killedAt := time.Now()
	first := awaitFirstOf(ctx, t, r, standbyName, m, standby, leaseDuration+20*time.Second)
	takeover := first.at.Sub(killedAt)
	t.Logf("SIGKILL %s: %s published its first event (%s) %s after the kill (lease duration %s)",
		leaderName, standbyName, opName(first.ev), takeover.Round(10*time.Millisecond), leaseDuration)
	if limit := leaseDuration + takeoverMargin; takeover > limit {
		t.Errorf("the standby took over %s after the leader was killed, more than the lease duration %s plus %s", takeover.Round(10*time.Millisecond), leaseDuration, takeoverMargin)
	}
	rs := r.awaitRound(ctx, t, m, kafkaCopies, standby, 60*time.Second, "the new leader's first round")
	t.Logf("takeover round %s by %s: %d object events %v (%d of them already published by %s: acknowledged, position not yet saved), ended %s after the kill",
		rs.reason, rs.instance, len(rs.events), rs.ops(), len(r.repeatsOf(rs, leaderName)), leaderName, rs.endedAt.Sub(killedAt).Round(10*time.Millisecond))
	if rs.reason != "RESUME" || rs.instance != standbyName {
		t.Errorf("the takeover's first round is %s by %q, want RESUME by %s", rs.reason, rs.instance, standbyName)
	}
	time.Sleep(3 * time.Second)
	ch.end(t)
	v := awaitExact(ctx, t, r, client, ns, standby, 60*time.Second, quiescence{settle: 2 * time.Second, quiet: 2 * time.Second})
	logFinal(t, r, v, "after the SIGKILL failover")
	if v.deleted == 0 {
		t.Errorf("the consumer saw no deletes: the churn did not exercise them")
	}

	// The killed replica comes back, with the same flags, as a standby.
	oldName := leaderName
	old := leader.restart(t)
	replicas[oldName] = old
	leaderName, leader = standbyName, standby
	standbyName, standby = oldName, old
	standby.awaitReadyz(ctx, t, http.StatusOK, 60*time.Second, "the restarted replica as a synced standby")
	if v, _ := standby.metricValue("kubestream_leader"); v != 0 {
		t.Fatalf("restarted %s reports kubestream_leader %v, want a standby", standbyName, v)
	}
	if v, _ := leader.metricValue("kubestream_leader"); v != 1 {
		t.Fatalf("%s reports kubestream_leader %v, want it to lead", leaderName, v)
	}

	// SIGTERM handover during churn.
	ch = startChurn(ctx, t, 10, f.pods, f.cms)
	time.Sleep(3 * time.Second)
	leader.alive(t)
	m = r.mark()
	if err := leader.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	termAt := time.Now()
	first = awaitFirstOf(ctx, t, r, standbyName, m, standby, leaseDuration+20*time.Second)
	handover := first.at.Sub(termAt)
	select {
	case <-leader.exited:
	case <-time.After(45 * time.Second):
		t.Fatalf("%s did not exit within 45 s of SIGTERM\nkubestream output:\n%s", leaderName, leader.tail(40))
	}
	if leader.err != nil {
		t.Errorf("%s exited with %v after SIGTERM, want 0\nkubestream output:\n%s", leaderName, leader.err, leader.tail(40))
	}
	t.Logf("SIGTERM %s: it exited %s after the signal; %s published its first event (%s) %s after it (lease duration %s)",
		leaderName, leader.exitedAt.Sub(termAt).Round(10*time.Millisecond), standbyName, opName(first.ev), handover.Round(10*time.Millisecond), leaseDuration)
	if limit := leaseDuration / 2; handover > limit {
		t.Errorf("handover took %s after SIGTERM, more than %s: the lease was not released on shutdown", handover.Round(10*time.Millisecond), limit)
	}
	rs = r.awaitRound(ctx, t, m, kafkaCopies, standby, 60*time.Second, "the handover's first round")
	t.Logf("handover round %s by %s: %d object events %v, ended %s after SIGTERM",
		rs.reason, rs.instance, len(rs.events), rs.ops(), rs.endedAt.Sub(termAt).Round(10*time.Millisecond))
	if rs.reason != "RESUME" || rs.instance != standbyName {
		t.Errorf("the handover's first round is %s by %q, want RESUME by %s", rs.reason, rs.instance, standbyName)
	}
	// The old leader drained and saved its positions before it released
	// the lease: the new one sends only what changed after, nothing again.
	if again := r.repeatsOf(rs, leaderName); len(again) > 0 {
		t.Errorf("the handover round re-sent %d events %s had published before it released the lease:\n%s",
			len(again), leaderName, firstEvents(again, 10))
	}
	time.Sleep(3 * time.Second)
	ch.end(t)
	if late := r.writtenAfter(leaderName, standbyName, m); len(late) > 0 {
		t.Errorf("%d events of %s follow %s's first event in their partition: two writers at once\n%s",
			len(late), leaderName, standbyName, firstEvents(late, 10))
	}
	v = awaitExact(ctx, t, r, client, ns, standby, 60*time.Second, quiescence{settle: 2 * time.Second, quiet: 2 * time.Second})
	logFinal(t, r, v, "after the SIGTERM handover")
	t.Logf("duplicate ids %d", r.duplicates())
	if lease, err := client.CoordinationV1().Leases("default").Get(ctx, "kubestream", metav1.GetOptions{}); err == nil {
		holder := ""
		if lease.Spec.HolderIdentity != nil {
			holder = *lease.Spec.HolderIdentity
		}
		transitions := int32(0)
		if lease.Spec.LeaseTransitions != nil {
			transitions = *lease.Spec.LeaseTransitions
		}
		t.Logf("Lease default/kubestream: holder %q, %d transitions", holder, transitions)
	}
	standby.stop(t)
	logTook()
}

// awaitLeader waits until exactly one replica reports kubestream_leader 1
// and returns its name and the other's.
func awaitLeader(ctx context.Context, t *testing.T, replicas map[string]*binary, within time.Duration) (leader, standby string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var leaders, standbys []string
		for name, b := range replicas {
			b.alive(t)
			switch v, ok := b.metricValue("kubestream_leader"); {
			case ok && v == 1:
				leaders = append(leaders, name)
			case ok && v == 0:
				standbys = append(standbys, name)
			}
		}
		if len(leaders) == 1 && len(standbys) == len(replicas)-1 {
			return leaders[0], standbys[0]
		}
		if len(leaders) > 1 {
			t.Fatalf("two leaders at once: %v", leaders)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader after %s (leaders %v, standbys %v)", within, leaders, standbys)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// awaitFirstOf waits for the first event published by instance read after m.
func awaitFirstOf(ctx context.Context, t *testing.T, r *reader, instance string, m mark, b *binary, within time.Duration) readEvent {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if e, ok := r.firstOf(instance, m); ok {
			return e
		}
		b.alive(t)
		if time.Now().After(deadline) {
			t.Fatalf("no event of %s within %s\n%s output:\n%s", instance, within, instance, b.tail(60))
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// writtenAfter returns the events of instance old read after m that follow,
// in their stream, an event of instance next.
func (r *reader) writtenAfter(old, next string, m mark) []readEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	nextSeen := map[string]bool{}
	var out []readEvent
	for _, e := range r.log[m.n:] {
		switch e.ev.GetInstance() {
		case next:
			nextSeen[e.stream] = true
		case old:
			if nextSeen[e.stream] {
				out = append(out, e)
			}
		}
	}
	return out
}

// repeatsOf returns the events of round rs that instance had already
// published: a CREATED, UPDATED or SNAPSHOT of a uid at a resourceVersion it
// sent, or a DELETED of a uid it deleted.
func (r *reader) repeatsOf(rs roundStats, instance string) []readEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	versions, deleted := map[string]bool{}, map[string]bool{}
	for _, e := range r.log {
		if e.ev.GetInstance() != instance || !isObjectEvent(e.ev) {
			continue
		}
		o := e.ev.GetObject()
		if e.ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED {
			deleted[o.GetUid()] = true
		} else {
			versions[o.GetUid()+"@"+o.GetResourceVersion()] = true
		}
	}
	var out []readEvent
	for _, e := range rs.events {
		o := e.ev.GetObject()
		if e.ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED && deleted[o.GetUid()] ||
			e.ev.GetOperation() != kubestreamv1.Operation_OPERATION_DELETED && versions[o.GetUid()+"@"+o.GetResourceVersion()] {
			out = append(out, e)
		}
	}
	return out
}
