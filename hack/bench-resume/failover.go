package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubestream/kubestream/internal/loadtest"
	"github.com/kubestream/kubestream/pkg/leader"
)

const (
	failoverNamespace  = "failover"
	failoverConfigMaps = 20
	writeInterval      = 100 * time.Millisecond
)

type failoverResults struct {
	LeaseDuration string `json:"leaseDuration"`
	RenewDeadline string `json:"renewDeadline"`
	RetryPeriod   string `json:"retryPeriod"`
	// Writes is every configmap update made (one per writeInterval),
	// WriteErrors those that failed.
	Writes      int             `json:"writes"`
	WriteErrors int             `json:"writeErrors"`
	Switches    []failoverEvent `json:"switches"`
	// Consumer compares the contract's consumer with the apiserver at the
	// end.
	Consumer string `json:"consumer"`
	// LeaseTransitions is the Lease's spec.leaseTransitions at the end.
	LeaseTransitions int32 `json:"leaseTransitions"`
}

// failoverEvent is one change of leader.
type failoverEvent struct {
	Signal string `json:"signal"`
	From   string `json:"from"`
	To     string `json:"to"`
	// SignalToFirst is from the signal to the first event of the new
	// leader read back; SignalToEnd to its first round's last REPLAY_END.
	SignalToFirst float64    `json:"signalToFirstEventSeconds"`
	SignalToEnd   float64    `json:"signalToReplayEndSeconds"`
	FirstEvent    string     `json:"firstEvent"`
	Round         roundStats `json:"round"`
	// OldExit is from SIGTERM to the old leader's exit; OldLastEvent to
	// the last event it published that was read back.
	OldExit      float64 `json:"oldLeaderExitSeconds,omitempty"`
	OldLastEvent float64 `json:"oldLeaderLastEventSeconds"`
	// Overlap is true when the old leader's last event was read after the
	// new leader's first.
	Overlap bool `json:"overlap"`
	// GapWrites were made between the signal and the new leader's first
	// event; GapWritesOwnEvent of them came with an event of their own
	// resourceVersion (the others were superseded by a later write of the
	// same configmap before the new leader sent the difference).
	GapWrites         int `json:"gapWrites"`
	GapWritesOwnEvent int `json:"gapWritesWithOwnEvent"`
}

type configWrite struct {
	name, rv string
	at       time.Time
}

type failover struct {
	o       options
	client  kubernetes.Interface
	bus     *bus
	args    []string
	dir     string
	n       int
	leader  *proc
	standby *proc

	mu     sync.Mutex
	writes []configWrite
	errors int
}

func failoverScenario(ctx context.Context, o options) (*failoverResults, error) {
	res := &failoverResults{LeaseDuration: leader.DefaultLeaseDuration.String(), RenewDeadline: leader.DefaultRenewDeadline.String(), RetryPeriod: leader.DefaultRetryPeriod.String()}
	logf("failover: starting etcd and kube-apiserver")
	cp, client, err := startControlPlane(ctx, failoverNamespace)
	if err != nil {
		return res, err
	}
	defer cp.Stop()
	f := &failover{o: o, client: client, dir: filepath.Join(o.logDir, "failover")}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return res, err
	}
	for i := 0; i < failoverConfigMaps; i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%02d", i), Namespace: failoverNamespace}, Data: map[string]string{"n": "0"}}
		if _, err := client.CoreV1().ConfigMaps(failoverNamespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return res, err
		}
	}
	if f.bus, err = newBus(ctx, "kafka", f.dir, []string{"kubestream.configmaps"}); err != nil {
		return res, err
	}
	defer f.bus.close()
	f.args = append([]string{"run", "--kubeconfig", cp.Kubeconfig, "--kinds", "configmaps", "--namespace", failoverNamespace,
		"--resync", "0", "--listen-address", "127.0.0.1:0", "--leader-elect"}, f.bus.args...)

	if f.leader, err = f.start(); err != nil {
		return res, err
	}
	defer func() {
		for _, p := range []*proc{f.standby, f.leader} {
			if p != nil {
				p.kill()
			}
		}
	}()
	if err := waitFor(ctx, 2*time.Minute, "the first leader's first round", func() bool {
		_, done := f.bus.log.round(f.leader.name, f.bus.copies)
		return done && f.leader.metric("kubestream_leader") == 1
	}, f.leader); err != nil {
		return res, err
	}
	if f.standby, err = f.startStandby(ctx); err != nil {
		return res, err
	}

	wctx, stopWrites := context.WithCancel(ctx)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		f.writeLoop(wctx)
	}()
	defer func() { stopWrites(); <-writerDone }()
	if err := loadtest.Sleep(ctx, 3*time.Second); err != nil {
		return res, err
	}
	for c := 0; c < o.failoverCycles; c++ {
		for _, sig := range []string{"SIGKILL", "SIGTERM"} {
			ev, err := f.switchOver(ctx, sig)
			if err != nil {
				return res, err
			}
			res.Switches = append(res.Switches, ev)
			logf("failover: %s %s: %s published its first event %.2f s after the signal (round %s, %d object events %v, end at %.2f s); %d writes in the gap, %d with an event of their own; overlap %v",
				sig, ev.From, ev.To, ev.SignalToFirst, ev.Round.Reason, ev.Round.Events, ev.Round.Ops, ev.SignalToEnd, ev.GapWrites, ev.GapWritesOwnEvent, ev.Overlap)
			if err := loadtest.Sleep(ctx, 2*time.Second); err != nil {
				return res, err
			}
		}
	}
	stopWrites()
	<-writerDone
	if err := loadtest.Sleep(ctx, 3*time.Second); err != nil {
		return res, err
	}
	cms, err := client.CoreV1().ConfigMaps(failoverNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return res, err
	}
	want := map[string]string{}
	for _, cm := range cms.Items {
		want[string(cm.UID)] = cm.ResourceVersion
	}
	res.Consumer = diffObjects(want, f.bus.log.objects())
	f.mu.Lock()
	res.Writes, res.WriteErrors = len(f.writes), f.errors
	f.mu.Unlock()
	if lease, err := client.CoordinationV1().Leases("default").Get(ctx, leader.DefaultName, metav1.GetOptions{}); err == nil && lease.Spec.LeaseTransitions != nil {
		res.LeaseTransitions = *lease.Spec.LeaseTransitions
	}
	if err := f.standby.term(time.Minute); err != nil {
		return res, err
	}
	if err := f.leader.term(time.Minute); err != nil {
		return res, err
	}
	return res, f.bus.log.failure()
}

func (f *failover) start() (*proc, error) {
	f.n++
	inst := "replica-" + strconv.Itoa(f.n)
	args := append(append([]string{}, f.args...), "--instance", inst)
	logf("failover: start %s", inst)
	return startProc(inst, f.o.binary, args, filepath.Join(f.dir, inst+".log"))
}

// startStandby starts a replica and waits until it is a synced standby.
func (f *failover) startStandby(ctx context.Context) (*proc, error) {
	p, err := f.start()
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 2*time.Minute, p.name+" to be a synced standby", func() bool {
		return p.ready() && p.metric("kubestream_leader") == 0
	}, p); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

// writeLoop updates one configmap every writeInterval, round robin.
func (f *failover) writeLoop(ctx context.Context) {
	t := time.NewTicker(writeInterval)
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		name := fmt.Sprintf("cm-%02d", i%failoverConfigMaps)
		at := time.Now()
		cm, err := f.client.CoreV1().ConfigMaps(failoverNamespace).Patch(ctx, name, types.MergePatchType,
			[]byte(fmt.Sprintf(`{"data":{"n":"%d"}}`, i)), metav1.PatchOptions{})
		f.mu.Lock()
		if err != nil {
			if ctx.Err() == nil {
				f.errors++
			}
		} else {
			f.writes = append(f.writes, configWrite{name: name, rv: cm.ResourceVersion, at: at})
		}
		f.mu.Unlock()
	}
}

// switchOver stops the leader with sig and measures the standby's takeover;
// the old leader then comes back as a new standby.
func (f *failover) switchOver(ctx context.Context, sig string) (failoverEvent, error) {
	old, next := f.leader, f.standby
	ev := failoverEvent{Signal: sig, From: old.name, To: next.name}
	t0 := time.Now()
	termErr := make(chan error, 1)
	if sig == "SIGKILL" {
		old.kill()
		termErr <- nil
	} else {
		go func() { termErr <- old.term(time.Minute) }()
	}
	var first time.Time
	if err := waitFor(ctx, 90*time.Second, next.name+"'s first event", func() bool {
		at, e := f.bus.log.firstOf(next.name)
		if e != nil {
			first = at
			ev.FirstEvent = opName(e.GetOperation())
		}
		return e != nil
	}, next); err != nil {
		return ev, err
	}
	ev.SignalToFirst = first.Sub(t0).Seconds()
	if err := waitFor(ctx, time.Minute, next.name+"'s first round", func() bool {
		var done bool
		ev.Round, done = f.bus.log.round(next.name, f.bus.copies)
		return done
	}, next); err != nil {
		return ev, err
	}
	ev.SignalToEnd = since(t0, ev.Round.EndAt)
	if err := <-termErr; err != nil {
		return ev, err
	}
	if sig == "SIGTERM" {
		ev.OldExit = old.exitedAt.Sub(t0).Seconds()
	}
	last := f.bus.log.lastOf(old.name)
	ev.OldLastEvent = last.Sub(t0).Seconds()
	ev.Overlap = last.After(first)

	seen := f.bus.log.versions()
	f.mu.Lock()
	for _, w := range f.writes {
		if !w.at.Before(t0) && w.at.Before(first) {
			ev.GapWrites++
			if seen[w.name+"@"+w.rv] {
				ev.GapWritesOwnEvent++
			}
		}
	}
	f.mu.Unlock()

	f.leader = next
	p, err := f.startStandby(ctx)
	if err != nil {
		return ev, err
	}
	f.standby = p
	return ev, nil
}
