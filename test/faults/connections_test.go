package faults

import (
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestLostAcksAndDroppedConnections churns pods and config maps while, every
// 2 s, the brokers either close every client connection at once (as a broker
// restart does) or append produce requests and then answer them with an
// error (REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND: the records are
// in the log but kubestream is told they are not, so it sends them again).
// Redeliveries are allowed (the contract is at-least-once), loss is not: at
// quiescence the consumer holds exactly the apiserver's objects, every uid
// it saw that is gone got a DELETED, and no REPLAY_END removed anything.
func TestLostAcksAndDroppedConnections(t *testing.T) {
	ctx, logTook := begin(t, 3*time.Minute)
	const ns = "faults-conns"
	f := startPopulated(ctx, t, ns, pool{150, 50}, pool{50, 20})
	cp, client := f.cp, f.client
	ct := newConnTracker()
	kc := newKafka(t, kfake.ListenFn(ct.listen))
	r := newReader(ctx, t, kc.ListenAddrs())
	b := startBinary(t, cp.Kubeconfig, kc.ListenAddrs(), ns, "--resync", "3s", "--kafka-tombstones")
	b.awaitReadyz(ctx, t, http.StatusOK, 60*time.Second, "after the initial round")
	r.awaitInitialRound(ctx, t, b)

	ch := startChurn(ctx, t, 20, f.pods, f.cms)
	const lostPerFault = 3
	var ackFaults []*kfake.FaultHandle
	lostCodes := []*kerr.Error{kerr.RequestTimedOut, kerr.NotEnoughReplicasAfterAppend}
	for i := 0; i < 10; i++ {
		time.Sleep(2 * time.Second)
		b.alive(t)
		if i%2 == 0 {
			n := ct.killAll()
			t.Logf("%2ds: closed %d broker connections", 2*(i+1), n)
			continue
		}
		code := lostCodes[(i/2)%len(lostCodes)]
		ackFaults = append(ackFaults, kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: code, Count: lostPerFault}))
		t.Logf("%2ds: the next %d produce requests are appended and answered %s", 2*(i+1), lostPerFault, code.Message)
	}
	time.Sleep(2 * time.Second)
	ch.end(t)
	lost := 0
	for _, h := range ackFaults {
		lost += h.Hits()
	}
	if ct.killed == 0 {
		t.Errorf("no broker connection was open to close")
	}
	if lost == 0 {
		t.Errorf("no produce request was answered with a lost acknowledgement")
	}

	v := awaitExact(ctx, t, r, client, ns, b, 90*time.Second, quiescence{settle: 7 * time.Second, rounds: 2})
	records, rounds, _ := r.counts()
	t.Logf("consumer %d objects, apiserver %d objects, deleted %d (records %d, replay rounds %d, connections closed %d in %d kills, acknowledgements lost %d, duplicate ids %d)",
		v.consumer, v.apiserver, v.deleted, records, rounds, ct.killed, ct.kills, lost, r.duplicates())
	if v.deleted == 0 {
		t.Errorf("the consumer saw no deletes: the churn did not exercise them")
	}
	b.stop(t)
	logTook()
}
