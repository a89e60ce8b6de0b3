package main

import (
	"context"
	"fmt"
	"time"

	"github.com/kubestream/kubestream/internal/loadtest"
)

// costResults compares the load harness's churn with resume on and off.
type costResults struct {
	Runs []costRun `json:"runs"`
	// Mean CPU seconds per 1000 churn events of each side, and on / off.
	OnPer1000  float64 `json:"resumeOnCpuSecondsPer1000Events"`
	OffPer1000 float64 `json:"resumeOffCpuSecondsPer1000Events"`
	Ratio      float64 `json:"ratio"`
	// FloorPer1000 is the bare watch's, measured in the same rounds.
	FloorPer1000 float64 `json:"floorCpuSecondsPer1000Events"`
}

type costRun struct {
	Resume bool `json:"resume"`
	// From the churn phase.
	Writes          int     `json:"writes"`
	WritesPerSecond float64 `json:"writesPerSecond"`
	Events          int     `json:"eventsDelivered"`
	CPUSeconds      float64 `json:"cpuSeconds"`
	CPUPer1000      float64 `json:"cpuSecondsPer1000Events"`
	LagP99          float64 `json:"latencyP99Seconds"`
	// CreatePer1000 and DeletePer1000 are the cache phase's create and
	// delete waves.
	CreatePer1000 float64 `json:"cacheCreateCpuSecondsPer1000Events"`
	DeletePer1000 float64 `json:"cacheDeleteCpuSecondsPer1000Events"`
}

// costScenario runs internal/loadtest with the Kafka sink, resume on and
// --resume=false as two targets, --cost-rounds rounds: the order is
// reversed every other round, so a drift of the machine's load falls on
// both sides.
func costScenario(ctx context.Context, o options) (*costResults, error) {
	on := loadtest.Target{Name: "resume on", Sink: loadtest.SinkKafka, Binary: o.binary}
	off := loadtest.Target{Name: "resume off", Sink: loadtest.SinkKafka, Binary: o.binary, Args: []string{"--resume=false"}}
	logf("cost: %d rounds of the load harness, Kafka sink, resume on and off", o.costRounds)
	rep, err := loadtest.Run(ctx, loadtest.Options{Targets: []loadtest.Target{loadtest.Floor, on, off}, Rounds: o.costRounds, Pods: 2000, Rate: 500, Workers: 32,
		Settle: 3 * time.Second, Binary: o.binary})
	if err != nil {
		return nil, fmt.Errorf("load harness: %w", err)
	}
	res := &costResults{}
	var onCPU, offCPU, floorCPU []float64
	for _, r := range rep.Results {
		ph := r.Churn()
		if r.Sink == loadtest.SinkFloor {
			floorCPU = append(floorCPU, ph.CPUPer1000)
			continue
		}
		run := costRun{Resume: r.Target == on.Name, Writes: ph.Writes, WritesPerSecond: ph.WritesPerSecond, Events: ph.EventsDelivered,
			CPUSeconds: ph.CPUSeconds, CPUPer1000: ph.CPUPer1000, LagP99: ph.LatencyP99}
		for _, p := range r.Phases {
			switch p.Name {
			case "cache-create":
				run.CreatePer1000 = p.CPUPer1000
			case "cache-delete":
				run.DeletePer1000 = p.CPUPer1000
			}
		}
		if run.Resume {
			onCPU = append(onCPU, run.CPUPer1000)
		} else {
			offCPU = append(offCPU, run.CPUPer1000)
		}
		res.Runs = append(res.Runs, run)
	}
	res.OnPer1000, res.OffPer1000, res.FloorPer1000 = mean(onCPU), mean(offCPU), mean(floorCPU)
	if res.OffPer1000 > 0 {
		res.Ratio = res.OnPer1000 / res.OffPer1000
	}
	return res, nil
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
