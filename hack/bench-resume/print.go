package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/kubestream/kubestream/internal/loadtest"
)

func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\nkubestream restart and failover benchmark\n")
	fmt.Fprintf(w, "machine: %d CPUs (%s), Linux %s, %s, load average %.2f at start; logs: %s\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.Kernel, r.Machine.GoVersion, r.Machine.LoadAvg, r.LogDir)
	for _, rs := range r.Restarts {
		fmt.Fprintf(w, "\nrestart, %s sink, %d pods (created in %.1f s)\n", rs.Sink, rs.Pods, rs.CreateSeconds)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "start\tround\tstart→END\tlist\tload state\tCPU-s\tpublished\tobject events read\tby operation\trepeats\tconsumer\tstop")
		for _, run := range rs.Runs {
			fmt.Fprintf(tw, "%s\t%s\t%.2f s\t%s\t%s\t%.2f\t%.0f\t%d\t%s\t%d\t%s\t%s\n", run.Name, run.Round.Reason, run.StartToEnd,
				secs(run.ListSeconds), secs(run.LoadSeconds), run.CPUSeconds, run.Published, run.Round.Events, ops(run.Round.Ops), run.Round.Repeats, run.Consumer, run.Stop)
		}
		tw.Flush()
		for _, run := range rs.Runs {
			if ak := run.AfterKill; ak != nil {
				fmt.Fprintf(w, "  after the SIGKILL of %q: %d of %d live updates saved at their resourceVersion", run.Name, ak.SavedAtLive, ak.LiveUpdates)
				if rs.Sink == "nats" {
					fmt.Fprintf(w, "; stream last sequence %d, %d read before the kill", ak.StreamLastSeq, ak.ReadSeq)
				}
				fmt.Fprintln(w)
			}
		}
	}
	if c := r.Cost; c != nil {
		fmt.Fprintf(w, "\ncost of the state: load harness churn, Kafka sink\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "run\tresume\twrites/s\tevents\tCPU-s\tCPU-s/1000 ev\tlag p99\tcreate CPU-s/1000\tdelete CPU-s/1000")
		for i, run := range c.Runs {
			fmt.Fprintf(tw, "%d\t%v\t%.0f\t%d\t%.2f\t%.3f\t%s\t%.3f\t%.3f\n", i+1, run.Resume, run.WritesPerSecond, run.Events, run.CPUSeconds, run.CPUPer1000, secs(run.LagP99), run.CreatePer1000, run.DeletePer1000)
		}
		tw.Flush()
		fmt.Fprintf(w, "mean CPU-s per 1000 events: resume on %.3f, off %.3f, ratio %.3f; bare watch (floor) %.3f\n", c.OnPer1000, c.OffPer1000, c.Ratio, c.FloorPer1000)
	}
	if f := r.Failover; f != nil {
		fmt.Fprintf(w, "\nfailover: lease %s, renew deadline %s, retry period %s; a configmap update every 100 ms\n", f.LeaseDuration, f.RenewDeadline, f.RetryPeriod)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "signal\tfrom\tto\tsignal→first event\tfirst\tsignal→END\tround events\tby operation\trepeats\told exit\told last event\toverlap\tgap writes\twith own event")
		for _, s := range f.Switches {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f s\t%s\t%.2f s\t%d\t%s\t%d\t%s\t%.2f s\t%v\t%d\t%d\n", s.Signal, s.From, s.To, s.SignalToFirst, s.FirstEvent, s.SignalToEnd,
				s.Round.Events, ops(s.Round.Ops), s.Round.Repeats, secs(s.OldExit), s.OldLastEvent, s.Overlap, s.GapWrites, s.GapWritesOwnEvent)
		}
		tw.Flush()
		fmt.Fprintf(w, "writes %d (%d failed); consumer at the end: %s; lease transitions %d\n", f.Writes, f.WriteErrors, f.Consumer, f.LeaseTransitions)
	}
}

func ops(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// secs is loadtest.Seconds with a space before the unit, and "-" for 0
// (not measured) as well as NaN.
func secs(s float64) string {
	if s == 0 {
		return "-"
	}
	return loadtest.Seconds(s, " ")
}
