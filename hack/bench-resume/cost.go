package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/kubestream/kubestream/hack/internal/benchproc"
)

// costResults compares hack/bench's churn with resume on and off.
type costResults struct {
	Runs []costRun `json:"runs"`
	// Mean CPU seconds per 1000 churn events of each side, and on / off.
	OnPer1000  float64 `json:"resumeOnCpuSecondsPer1000Events"`
	OffPer1000 float64 `json:"resumeOffCpuSecondsPer1000Events"`
	Ratio      float64 `json:"ratio"`
}

type costRun struct {
	Resume bool `json:"resume"`
	// From hack/bench's churn phase.
	Writes          int     `json:"writes"`
	WritesPerSecond float64 `json:"writesPerSecond"`
	Events          int     `json:"eventsDelivered"`
	CPUSeconds      float64 `json:"cpuSeconds"`
	CPUPer1000      float64 `json:"cpuSecondsPer1000Events"`
	LagP99          float64 `json:"lagP99Seconds"`
	// CreatePer1000 and DeletePer1000 are the cache phase's create and
	// delete waves.
	CreatePer1000 float64 `json:"cacheCreateCpuSecondsPer1000Events"`
	DeletePer1000 float64 `json:"cacheDeleteCpuSecondsPer1000Events"`
	Out           string  `json:"out"`
}

// benchOutput is the part of hack/bench's --out JSON read here.
type benchOutput struct {
	Phases []struct {
		Name            string  `json:"name"`
		Writes          int     `json:"writes"`
		WritesPerSecond float64 `json:"writesPerSecond"`
		EventsDelivered int     `json:"eventsDelivered"`
		CPUSeconds      float64 `json:"cpuSeconds"`
		CPUPer1000      float64 `json:"cpuSecondsPer1000Events"`
		LagP99          float64 `json:"lagP99Seconds"`
	} `json:"phases"`
}

func costScenario(ctx context.Context, o options) (*costResults, error) {
	dir := filepath.Join(o.logDir, "cost")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	benchBin, err := benchproc.GoBuild(dir, "bench", "./hack/bench")
	if err != nil {
		return nil, err
	}
	res := &costResults{}
	// on, off, off, on, on, off, ...: a linear drift of the machine's load
	// falls on both sides equally.
	var order []bool
	for i := 0; i < o.costRounds; i++ {
		order = append(order, i%2 == 0, i%2 != 0)
	}
	var on, off []float64
	for i, resume := range order {
		out := filepath.Join(dir, fmt.Sprintf("bench-%d.json", i+1))
		args := []string{"--sink", "kafka", "--binary", o.binary, "--out", out}
		if !resume {
			args = append(args, "--kubestream-args", "--resume=false")
		}
		logf("cost: run %d of %d: hack/bench %v", i+1, len(order), args)
		cmd := exec.CommandContext(ctx, benchBin, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return res, fmt.Errorf("hack/bench %v: %w", args, err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			return res, err
		}
		var bo benchOutput
		if err := json.Unmarshal(b, &bo); err != nil {
			return res, fmt.Errorf("read %s: %w", out, err)
		}
		run := costRun{Resume: resume, Out: out}
		for _, ph := range bo.Phases {
			switch ph.Name {
			case "churn":
				run.Writes, run.WritesPerSecond, run.Events = ph.Writes, ph.WritesPerSecond, ph.EventsDelivered
				run.CPUSeconds, run.CPUPer1000, run.LagP99 = ph.CPUSeconds, ph.CPUPer1000, ph.LagP99
			case "cache-create":
				run.CreatePer1000 = ph.CPUPer1000
			case "cache-delete":
				run.DeletePer1000 = ph.CPUPer1000
			}
		}
		if resume {
			on = append(on, run.CPUPer1000)
		} else {
			off = append(off, run.CPUPer1000)
		}
		res.Runs = append(res.Runs, run)
	}
	res.OnPer1000, res.OffPer1000 = mean(on), mean(off)
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
