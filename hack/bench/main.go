// Command bench measures kubestream under load against a real apiserver,
// next to a bare client-go watch (the floor) measured in the same run:
// CPU per 1000 events, resident memory per cached pod and write-to-event
// latency, as ratios and differences against the floor.
//
//	go run ./hack/bench                                   # floor and the Kafka sink, 2000 pods at 500 writes/s
//	go run ./hack/bench --sinks kafka,nats,stdout --rounds 2 --out-dir docs/perf
//	go run ./hack/bench --cache-pods 20000                # memory per cached pod at 20 000 pods
//	go run ./hack/bench --scale-pods 100000 --scale-resync 3m
//	go run ./hack/bench --binary old/kubestream --compare-binary bin/kubestream   # before and after, same run
//
// The method is internal/loadtest's; this command only reads flags. The
// figures are reported, never asserted.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kubestream/kubestream/internal/loadtest"
)

func main() {
	var (
		o          loadtest.Options
		sinks      string
		extraArgs  string
		compareBin string
		compareTag string
		env        string
		compareEnv string
		compareArg string
		outDir     string
		out        string
		render     string
	)
	flag.IntVar(&o.Pods, "pods", 2000, "pods of the churn phase, each created, updated twice and deleted")
	flag.IntVar(&o.CachePods, "cache-pods", 0, "pods created and kept in the cache phase (default --pods); 20000 for the memory scenario")
	flag.Float64Var(&o.Rate, "rate", 500, "target writes per second to the apiserver")
	flag.IntVar(&o.Workers, "workers", 32, "goroutines writing to the apiserver")
	flag.IntVar(&o.Rounds, "rounds", 1, "rounds of every target, the order reversed every other round")
	flag.DurationVar(&o.Settle, "settle", 3*time.Second, "pause before each memory reading, so the process is at rest")
	flag.StringVar(&sinks, "sinks", "kafka", "kubestream targets, comma-separated: kafka (in-process kfake, 3 brokers, acks=all), nats (embedded JetStream), stdout; the floor is always measured")
	flag.StringVar(&sinks, "sink", "kafka", "same as --sinks")
	flag.StringVar(&o.Binary, "binary", "", "kubestream binary to measure (default: build ./cmd/kubestream)")
	flag.StringVar(&compareBin, "compare-binary", "", "a second kubestream binary measured as its own targets in the same run (before/after)")
	flag.StringVar(&compareTag, "compare-name", "compared", "what the --compare-binary targets' names say in parentheses")
	flag.StringVar(&env, "env", "", "environment for the kubestream targets, space-separated (GOGC=200 GOMEMLIMIT=64MiB)")
	flag.StringVar(&compareEnv, "compare-env", "", "environment for the compared targets instead of --env; with it, --compare-binary defaults to --binary")
	flag.StringVar(&compareArg, "compare-args", "", "extra kubestream run arguments of the compared targets, added to --kubestream-args; with it, --compare-binary defaults to --binary")
	flag.StringVar(&extraArgs, "kubestream-args", "", "extra arguments for kubestream run, space-separated")
	flag.StringVar(&o.ProfileDir, "profile-dir", "", "save each kubestream run's CPU profile of the churn phase and heap profile of the cache phase here (go tool pprof)")
	flag.IntVar(&o.BurstPods, "burst-pods", 0, "also a burst phase per target: this many pods created as fast as the apiserver takes them (10000), then deleted")
	flag.IntVar(&o.ScalePods, "scale-pods", 0, "also run the scale scenario: this many pods exist before kubestream starts (100000 for the target)")
	flag.DurationVar(&o.ScaleResync, "scale-resync", 0, "--resync of the scale scenario; positive: measure one replay round at that size with live updates during it")
	flag.StringVar(&outDir, "out-dir", "", "write results.md, results.json, latency-cdf.svg and cost.svg here")
	flag.StringVar(&out, "out", "", "also write the results as JSON to this file")
	flag.StringVar(&render, "render", "", "measure nothing: write the --out-dir files again from this results.json")
	flag.Parse()
	if render != "" {
		rep, err := loadtest.ReadReport(render)
		if err == nil {
			err = rep.WriteFiles(outDir)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		return
	}

	args := strings.Fields(extraArgs)
	for _, sink := range strings.Split(sinks, ",") {
		sink = strings.TrimSpace(sink)
		o.Targets = append(o.Targets, loadtest.Target{Name: "kubestream, " + sink, Sink: sink, Args: args, Env: strings.Fields(env)})
		if compareBin != "" || compareEnv != "" || compareArg != "" {
			e := strings.Fields(env)
			if compareEnv != "" {
				e = strings.Fields(compareEnv)
			}
			a := append(append([]string(nil), args...), strings.Fields(compareArg)...)
			o.Targets = append(o.Targets, loadtest.Target{Name: "kubestream, " + sink + " (" + compareTag + ")", Sink: sink, Args: a, Binary: compareBin, Env: e})
		}
	}
	if err := o.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := loadtest.Run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	rep.Markdown(os.Stdout)
	rep.Details(os.Stdout)
	if outDir != "" {
		if err := rep.WriteFiles(outDir); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
	}
	if out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "bench: write %s: %v\n", out, err)
			os.Exit(1)
		}
	}
}
