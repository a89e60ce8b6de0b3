// Command bench-resume measures restarts and failovers of kubestream against
// a real apiserver: what a restart sends and how long it takes with resume
// on and off, what keeping the state costs, and how long a standby takes to
// publish after the leader is killed or stopped.
//
//	go run ./hack/bench-resume                         # every scenario, about 12 minutes on 2 cores
//	go run ./hack/bench-resume --scenarios restart-kafka --pods 2000
//	go run ./hack/bench-resume --out resume.json
//
// Scenarios (--scenarios, comma-separated):
//
//   - restart-kafka, restart-nats: --pods pods (Pending, no scheduler) and
//     kubestream with the Kafka sink (in-process kfake over TCP,
//     --kafka-create-topics) or the embedded NATS server (JetStream, one
//     data directory for every start). A first start sends the snapshot and
//     saves the state; then, while kubestream is stopped (SIGTERM), 50 pods
//     are updated, 30 deleted and 20 created, and kubestream starts again
//     with the same flags. Then a restart with nothing changed, one with
//     --resume=false, and two SIGKILLs after a burst of live updates (right
//     after they were read back, and 1.5 s later, past the state's 1 s
//     flush interval), each followed by another 1 % changed while down; the
//     saved state is read from the bus after each kill. Every start is timed from
//     the exec to the last copy of its first round's REPLAY_END read back,
//     and its round's object events are counted by operation. After every
//     round the consumer of pkg/contract, fed with everything read back,
//     must hold exactly the apiserver's pods.
//   - cost: the churn workload of internal/loadtest with the Kafka sink,
//     resume on (the default) and --resume=false as two targets next to
//     the bare-watch floor, --cost-rounds rounds, the order reversed every
//     other round so that a drift of the machine's load falls on both
//     sides; CPU seconds per 1000 events both ways.
//   - failover: two kubestream processes with --leader-elect (default lease
//     settings) and a configmap update every 100 ms. The leader is
//     SIGKILLed, then (after it came back as a standby) the new leader gets
//     SIGTERM; --failover-cycles times. Time from the signal to the first
//     event the other process published, read back by its --instance; at
//     the end the contract's consumer must match the apiserver.
//
// Figures are reported, never asserted; the harness fails only when
// kubestream exits early, a round does not arrive, or a stop leaves events
// unpublished.
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
	"github.com/kubestream/kubestream/internal/testbin"
)

type options struct {
	scenarios      []string
	pods           int
	writers        int
	binary         string
	out            string
	logDir         string
	costRounds     int
	failoverCycles int
}

func main() {
	var o options
	var scenarios string
	flag.StringVar(&scenarios, "scenarios", "restart-kafka,restart-nats,cost,failover", "comma-separated: restart-kafka, restart-nats, cost, failover")
	flag.IntVar(&o.pods, "pods", 10000, "pods of the restart scenarios; 1 % of them changes while kubestream is down")
	flag.IntVar(&o.writers, "writers", 64, "goroutines creating the pods")
	flag.StringVar(&o.binary, "binary", "", "kubestream binary to measure (default: build ./cmd/kubestream)")
	flag.StringVar(&o.out, "out", "", "also write the results as JSON to this file")
	flag.StringVar(&o.logDir, "log-dir", "", "keep kubestream's logs here (default: a new temporary directory, kept)")
	flag.IntVar(&o.costRounds, "cost-rounds", 2, "load harness rounds, each with resume on, --resume=false and the floor")
	flag.IntVar(&o.failoverCycles, "failover-cycles", 3, "SIGKILL and SIGTERM failovers, each this many times")
	flag.Parse()
	o.scenarios = strings.Split(scenarios, ",")
	for _, s := range o.scenarios {
		switch s {
		case "restart-kafka", "restart-nats", "cost", "failover":
		default:
			fmt.Fprintf(os.Stderr, "bench-resume: unknown scenario %q\n", s)
			os.Exit(2)
		}
	}
	if o.pods < 1000 || o.writers < 1 || o.costRounds < 1 || o.failoverCycles < 1 {
		fmt.Fprintln(os.Stderr, "bench-resume: --pods must be at least 1000 (1 % of it changes), the others positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	res, err := run(ctx, o)
	stop()
	if res != nil {
		res.print(os.Stdout)
		if o.out != "" {
			b, merr := json.MarshalIndent(res, "", "  ")
			if merr != nil {
				fmt.Fprintf(os.Stderr, "bench-resume: encode the results: %v\n", merr)
			} else if werr := os.WriteFile(o.out, append(b, '\n'), 0o644); werr != nil {
				fmt.Fprintf(os.Stderr, "bench-resume: write %s: %v\n", o.out, werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-resume: %v\n", err)
		os.Exit(1)
	}
}

type results struct {
	Machine  machine          `json:"machine"`
	LogDir   string           `json:"logDir"`
	Restarts []restartResults `json:"restarts,omitempty"`
	Cost     *costResults     `json:"cost,omitempty"`
	Failover *failoverResults `json:"failover,omitempty"`
}

type machine struct {
	loadtest.Machine
	LoadAvg float64 `json:"loadAverage1mAtStart"`
}

func run(ctx context.Context, o options) (*results, error) {
	res := &results{Machine: describeMachine()}
	if o.logDir == "" {
		dir, err := os.MkdirTemp("", "kubestream-bench-resume-")
		if err != nil {
			return nil, err
		}
		o.logDir = dir
	} else if err := os.MkdirAll(o.logDir, 0o755); err != nil {
		return nil, err
	}
	res.LogDir = o.logDir
	fmt.Fprintf(os.Stderr, "bench-resume: logs in %s\n", o.logDir)
	if o.binary == "" {
		bin, err := testbin.GoBuild(o.logDir, "kubestream", "./cmd/kubestream")
		if err != nil {
			return nil, err
		}
		o.binary = bin
	}
	for _, s := range o.scenarios {
		var err error
		switch s {
		case "restart-kafka", "restart-nats":
			var r restartResults
			r, err = restartScenario(ctx, o, strings.TrimPrefix(s, "restart-"))
			res.Restarts = append(res.Restarts, r)
		case "cost":
			res.Cost, err = costScenario(ctx, o)
		case "failover":
			res.Failover, err = failoverScenario(ctx, o)
		}
		if err != nil {
			return res, fmt.Errorf("%s: %w", s, err)
		}
	}
	return res, nil
}

func describeMachine() machine {
	m := machine{Machine: loadtest.DescribeMachine()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscanf(string(b), "%f", &m.LoadAvg)
	}
	return m
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-resume: "+format+"\n", args...)
}

func since(t0, t time.Time) float64 {
	if t.IsZero() {
		return -1
	}
	return t.Sub(t0).Seconds()
}
