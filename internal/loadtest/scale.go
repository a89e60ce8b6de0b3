package loadtest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
)

const scaleNamespace = "scale"

// Scale is what the scale scenario measured: kubestream started on a
// cluster that already holds Pods pods.
type Scale struct {
	Target string `json:"target"`
	Pods   int    `json:"pods"`
	// CreateSeconds is how long creating the pods took (not kubestream's).
	CreateSeconds float64 `json:"createSeconds"`
	// InitialSeconds is from the exec until every pod's SNAPSHOT and the
	// round's REPLAY_END were read back; InitialCPUSeconds the process's CPU
	// time by then.
	InitialSeconds    float64 `json:"initialSeconds"`
	InitialCPUSeconds float64 `json:"initialCpuSeconds"`
	// RSS and heap after a forced collection, per pod, with every pod
	// cached (the process's whole memory divided by the pods).
	RSSPerPod         float64 `json:"rssBytesPerPod"`
	HeapAfterGCPerPod float64 `json:"heapInuseBytesPerPodAfterGC"`
	// The replay round (--resync): from reading its REPLAY_BEGIN to reading
	// its REPLAY_END, and the latency of live updates written during it.
	ReplaySeconds    float64 `json:"replaySeconds,omitempty"`
	ReplayCPUSeconds float64 `json:"replayCpuSeconds,omitempty"`
	LiveWrites       int     `json:"liveWritesDuringReplay,omitempty"`
	LiveP50          float64 `json:"liveLatencyP50Seconds,omitempty"`
	LiveP99          float64 `json:"liveLatencyP99Seconds,omitempty"`
	LiveMax          float64 `json:"liveLatencyMaxSeconds,omitempty"`
	Log              string  `json:"log"`
}

// scaleTarget is the first kubestream target.
func scaleTarget(ts []Target) Target {
	for _, t := range ts {
		if t.Sink != SinkFloor {
			return t
		}
	}
	return Target{Name: "kubestream, stdout", Sink: SinkStdout}
}

func measureScale(ctx context.Context, o Options, t Target, kubeconfig, work string, client kubernetes.Interface) (*Scale, error) {
	s := &Scale{Target: t.Name, Pods: o.ScalePods}
	fill := &loader{client: client, namespace: scaleNamespace, workers: 64}
	fmt.Fprintf(o.Progress, "loadtest: scale: creating %d pods\n", o.ScalePods)
	created, err := fill.phase(ctx, nil, "scale-create", "scale", o.ScalePods, []string{opCreate})
	if err != nil {
		return nil, err
	}
	if created.WriteErrors > 0 {
		return nil, fmt.Errorf("%d of %d pods could not be created", created.WriteErrors, o.ScalePods)
	}
	s.CreateSeconds = created.WriteSeconds

	dir, err := os.MkdirTemp(work, "scale-")
	if err != nil {
		return nil, err
	}
	exec := time.Now()
	p, release, err := launch(o, t, kubeconfig, "", dir, "--resync", strconv.FormatFloat(o.ScaleResync.Seconds(), 'f', -1, 64)+"s")
	if err != nil {
		return nil, err
	}
	defer release()
	defer p.kill()
	s.Log = p.logPath
	initial := func() bool { return p.rec.Snapshots("scale") >= o.ScalePods && p.rec.ReplayEnds() > 0 }
	if err := waitFor(ctx, p, 10*time.Minute, "the initial round", initial); err != nil {
		return nil, err
	}
	s.InitialSeconds = time.Since(exec).Seconds()
	if s.InitialCPUSeconds, err = p.cpuSeconds(); err != nil {
		return nil, err
	}
	if err := Sleep(ctx, o.Settle); err != nil {
		return nil, err
	}
	rss, err := p.rss()
	if err != nil {
		return nil, err
	}
	s.RSSPerPod = float64(rss) / float64(o.ScalePods)
	if err := p.saveProfile(ctx, "/debug/pprof/heap?gc=1", profilePath(o, 0, t, "heap-scale")); err != nil {
		return nil, err
	}
	s.HeapAfterGCPerPod = p.metric("go_memstats_heap_inuse_bytes") / float64(o.ScalePods)
	if o.ScaleResync > 0 {
		if err := measureReplay(ctx, o, p, client, s); err != nil {
			return nil, err
		}
	}
	if _, err := p.stop(2 * time.Minute); err != nil {
		return nil, err
	}
	return s, nil
}

// measureReplay writes live updates at 50 per second to the first pods
// while waiting for the next replay round, and reports the round's length
// and what it did to the updates written during it.
func measureReplay(ctx context.Context, o Options, p *process, client kubernetes.Interface, s *Scale) error {
	fmt.Fprintf(o.Progress, "loadtest: scale: waiting for the replay round (--resync %s)\n", o.ScaleResync)
	live := &loader{client: client, namespace: scaleNamespace}
	stop := make(chan struct{})
	var (
		mu     sync.Mutex
		writes []write
		wg     sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wr, err := live.write(ctx, opTick, fmt.Sprintf("scale-%06d", i%min(1000, o.ScalePods)))
			if err == nil {
				mu.Lock()
				writes = append(writes, wr)
				mu.Unlock()
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	cpu0, err := p.cpuSeconds()
	if err != nil {
		return err
	}
	// A round's markers are counted as the initial round's REPLAY_BEGINs
	// (one: Kafka has a copy per partition, and the broker reader keeps
	// one), all read before its snapshots.
	begins0, _ := p.rec.Markers()
	copies := len(begins0)
	round := func() bool {
		_, ends := p.rec.Markers()
		return len(ends) >= 2*copies && p.rec.Snapshots("scale") >= 2*o.ScalePods
	}
	if err := waitFor(ctx, p, o.ScaleResync+10*time.Minute, "the replay round", round); err != nil {
		return err
	}
	if err := Sleep(ctx, 2*time.Second); err != nil { // the live updates written late in the round
		return err
	}
	close(stop)
	wg.Wait()
	cpu1, err := p.cpuSeconds()
	if err != nil {
		return err
	}
	begins, ends := p.rec.Markers()
	begin, end := begins[copies], ends[2*copies-1]
	s.ReplaySeconds = end.Sub(begin).Seconds()
	s.ReplayCPUSeconds = cpu1 - cpu0
	var during []write
	for _, wr := range writes {
		if !wr.sent.Before(begin) && wr.sent.Before(end) {
			during = append(during, wr)
		}
	}
	if _, err := waitForLast(ctx, p, "live updates", during); err != nil {
		return err
	}
	lat, _ := latencies(during, p.rec)
	slices.Sort(lat)
	s.LiveWrites = len(during)
	s.LiveP50, s.LiveP99, s.LiveMax = Quantile(lat, 0.5), Quantile(lat, 0.99), Quantile(lat, 1)
	return nil
}
