package faults

import (
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestBrokerOutageLongerThanResync refuses every produce request for 10 s,
// more than three --resync periods, while pods and config maps churn
// (creates, updates, deletes, same-name re-creates). Replay rounds that start
// while the broker is down must not make a consumer forget objects, and no
// delete may be lost: at quiescence the consumer holds exactly the
// apiserver's objects, every uid it saw that is gone got a DELETED, and no
// REPLAY_END removed anything. /readyz is 503 until the initial round is
// acknowledged, 200 after, 503 once publishing has failed for longer than
// --unready-after during the outage, and 200 again after recovery.
func TestBrokerOutageLongerThanResync(t *testing.T) {
	ctx, logTook := begin(t, 3*time.Minute)
	const ns = "faults-outage"
	f := startPopulated(ctx, t, ns, pool{200, 60}, pool{50, 20})
	cp, client := f.cp, f.client
	kc := newKafka(t)

	// The broker refuses produce requests from the start, so the initial
	// round cannot be acknowledged and /readyz must say so.
	refuse := func() *kfake.FaultHandle {
		return kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicas, Count: -1})
	}
	startFault := refuse()
	r := newReader(ctx, t, kc.ListenAddrs())
	b := startBinary(t, cp.Kubeconfig, kc.ListenAddrs(), ns, "--resync", "3s", "--unready-after", "2s")
	b.awaitReadyz(ctx, t, http.StatusServiceUnavailable, 60*time.Second, "before the initial round is acknowledged")
	for i := 0; i < 10; i++ { // it stays unready while the broker refuses
		if code, body := b.get("/readyz"); code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz = %d %q while the broker refuses the initial round, want 503", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, body := b.awaitReadyz(ctx, t, http.StatusServiceUnavailable, time.Second, "before the initial round is acknowledged")
	t.Logf("/readyz before the initial round is acknowledged: 503 %q (produce requests refused: %d)", body, startFault.Hits())
	if startFault.Hits() == 0 {
		t.Fatalf("kubestream sent no produce request while the broker refused them\nkubestream output:\n%s", b.tail(40))
	}
	startFault.Remove()
	took, _ := b.awaitReadyz(ctx, t, http.StatusOK, 60*time.Second, "after the initial round is acknowledged")
	t.Logf("/readyz 200 %s after the broker accepted produce requests", took.Round(10*time.Millisecond))
	r.awaitInitialRound(ctx, t, b)

	ch := startChurn(ctx, t, 25, f.pods, f.cms) // 50 changes per second in all
	time.Sleep(5 * time.Second)

	// The outage: 10 s of refused produce requests during churn.
	outage := refuse()
	outageStart := time.Now()
	var unreadyAfter time.Duration
	var unreadyBody string
	for time.Since(outageStart) < 10*time.Second {
		b.alive(t)
		if code, body := b.get("/readyz"); code == http.StatusServiceUnavailable && unreadyAfter == 0 {
			unreadyAfter, unreadyBody = time.Since(outageStart), body
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, endsBefore, _ := r.counts()
	outage.Remove()
	healed := time.Now()
	t.Logf("outage of %s: %d produce requests refused", healed.Sub(outageStart).Round(time.Millisecond), outage.Hits())
	if outage.Hits() == 0 {
		t.Fatal("no produce request reached the broker during the outage")
	}
	if unreadyAfter == 0 {
		t.Errorf("/readyz never turned 503 during a 10s outage with --unready-after 2s")
	} else {
		t.Logf("/readyz 503 %s into the outage: %q", unreadyAfter.Round(10*time.Millisecond), unreadyBody)
		if unreadyAfter < 2*time.Second {
			t.Errorf("/readyz turned 503 after %s of outage, before --unready-after 2s", unreadyAfter)
		}
	}
	took, _ = b.awaitReadyz(ctx, t, http.StatusOK, 60*time.Second, "after the outage")
	t.Logf("/readyz 200 again %s after the broker recovered", took.Round(10*time.Millisecond))

	time.Sleep(5 * time.Second) // churn goes on after recovery
	ch.end(t)

	v := awaitExact(ctx, t, r, client, ns, b, 90*time.Second, quiescence{settle: 7 * time.Second, rounds: 2})
	records, ends, _ := r.counts()
	t.Logf("consumer %d objects, apiserver %d objects, deleted %d (records %d, replay rounds %d, %d of them after the outage, duplicate ids %d, rounds skipped %s)",
		v.consumer, v.apiserver, v.deleted, records, ends, ends-endsBefore, r.duplicates(), b.metric("kubestream_replay_rounds_skipped_total"))
	if v.deleted == 0 {
		t.Errorf("the consumer saw no deletes: the churn did not exercise them")
	}
	b.stop(t)
	logTook()
}
