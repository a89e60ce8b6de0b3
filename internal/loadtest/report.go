package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Summary is one target's figures over all rounds, each against the floor
// measured in the same round.
type Summary struct {
	Target string `json:"target"`
	Floor  bool   `json:"floor"`
	Rounds int    `json:"rounds"`
	// Churn phase.
	CPUPer1000     Range `json:"cpuSecondsPer1000Events"`
	CPUTimesFloor  Range `json:"cpuTimesFloor"`
	LatencyP50     Range `json:"latencyP50Seconds"`
	LatencyP99     Range `json:"latencyP99Seconds"`
	AddedP50       Range `json:"addedLatencyP50Seconds"`
	AddedP99       Range `json:"addedLatencyP99Seconds"`
	Delivered      Range `json:"eventsDelivered"`
	Coalesced      Range `json:"coalesced"`
	WritesPerSec   Range `json:"writesPerSecond"`
	RSSPerPod      Range `json:"rssBytesPerCachedPod"`
	HeapGCPerPod   Range `json:"heapBytesPerCachedPodAfterGC"`
	CreateCPU1000  Range `json:"cacheCreateCpuSecondsPer1000Events"`
	CreateTimesFlr Range `json:"cacheCreateCpuTimesFloor"`
	// The burst phase, when run.
	BurstWrites Range `json:"burstWrites"`
	BurstRate   Range `json:"burstWritesPerSecond"`
	BurstP50    Range `json:"burstLatencyP50Seconds"`
	BurstP99    Range `json:"burstLatencyP99Seconds"`
	BurstEarly  Range `json:"burstFirstTenthP50Seconds"`
	BurstLate   Range `json:"burstLastTenthP50Seconds"`
	// latencies of every round's churn phase, sorted, for the CDF.
	latencies []float64
}

// Summaries groups the results by target, in the order of the targets,
// with ratios against the floor of the same round.
func (r *Report) Summaries() []Summary {
	floors := map[int]Result{}
	for _, res := range r.Results {
		if res.Sink == SinkFloor {
			floors[res.Round] = res
		}
	}
	var out []Summary
	for _, t := range r.Settings.Targets {
		s := Summary{Target: t.Name, Floor: t.Sink == SinkFloor}
		var cpu, ratio, p50, p99, a50, a99, del, coal, wps, rss, heap, ccpu, cratio, lat []float64
		var bw, br, b50, b99, be, bl []float64
		for _, res := range r.Results {
			if res.Target != t.Name {
				continue
			}
			s.Rounds++
			c := res.Churn()
			cpu = append(cpu, c.CPUPer1000)
			p50, p99 = append(p50, c.LatencyP50), append(p99, c.LatencyP99)
			del, coal, wps = append(del, float64(c.EventsDelivered)), append(coal, float64(c.Coalesced)), append(wps, c.WritesPerSecond)
			rss, heap = append(rss, res.Cache.RSSPerPod), append(heap, res.Cache.HeapAfterGCPerPod)
			lat = append(lat, c.Latencies...)
			if b := phaseNamed(res, "burst"); b.Writes > 0 {
				bw, br, b50, b99 = append(bw, float64(b.Writes)), append(br, b.WritesPerSecond), append(b50, b.LatencyP50), append(b99, b.LatencyP99)
				be, bl = append(be, b.EarlyP50), append(bl, b.LateP50)
			}
			create := phaseNamed(res, "cache-create")
			ccpu = append(ccpu, create.CPUPer1000)
			if f, ok := floors[res.Round]; ok {
				fc := f.Churn()
				ratio = append(ratio, c.CPUPer1000/fc.CPUPer1000)
				a50, a99 = append(a50, c.LatencyP50-fc.LatencyP50), append(a99, c.LatencyP99-fc.LatencyP99)
				cratio = append(cratio, create.CPUPer1000/phaseNamed(f, "cache-create").CPUPer1000)
			}
		}
		s.CPUPer1000, s.CPUTimesFloor = RangeOf(cpu), RangeOf(ratio)
		s.LatencyP50, s.LatencyP99, s.AddedP50, s.AddedP99 = RangeOf(p50), RangeOf(p99), RangeOf(a50), RangeOf(a99)
		s.Delivered, s.Coalesced, s.WritesPerSec = RangeOf(del), RangeOf(coal), RangeOf(wps)
		s.RSSPerPod, s.HeapGCPerPod = RangeOf(rss), RangeOf(heap)
		s.CreateCPU1000, s.CreateTimesFlr = RangeOf(ccpu), RangeOf(cratio)
		s.BurstWrites, s.BurstRate, s.BurstP50, s.BurstP99 = RangeOf(bw), RangeOf(br), RangeOf(b50), RangeOf(b99)
		s.BurstEarly, s.BurstLate = RangeOf(be), RangeOf(bl)
		s.latencies = sortedCopy(lat)
		out = append(out, s)
	}
	return out
}

func phaseNamed(r Result, name string) Phase {
	for _, p := range r.Phases {
		if p.Name == name {
			return p
		}
	}
	return Phase{}
}

// Markdown writes the summary table: one row per target, ranges over the
// rounds.
func (r *Report) Markdown(w io.Writer) {
	fmt.Fprintf(w, "%d rounds; churn: %d pods × 4 writes at %.0f writes/s target (%s measured); cache: %d pods of %d bytes; %d CPUs (%s), load average %.1f at the end, %s.\n\n",
		r.Settings.Rounds, r.Settings.Pods, r.Settings.Rate, rangeText(r.floorOrFirst().WritesPerSec, "%.0f", 1), r.Settings.CachePods, r.Settings.PodBytes,
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.LoadAverage, r.Machine.GoVersion)
	fmt.Fprintln(w, "| target | CPU-s / 1000 events | × floor | creates only: × floor | latency p50 / p99 | added over floor p50 / p99 | RSS / cached pod | heap / cached pod after GC | events (coalesced) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, s := range r.Summaries() {
		name := s.Target
		ratio, cratio, added := rangeText(s.CPUTimesFloor, "%.2f", 1), rangeText(s.CreateTimesFlr, "%.2f", 1), rangeText(s.AddedP50, "%.0f", 1000)+" / "+rangeText(s.AddedP99, "%.0f", 1000)+" ms"
		if s.Floor {
			name, ratio, cratio, added = "**"+name+"**", "1", "1", "0"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s / %s ms | %s | %s KB | %s KB | %s (%s) |\n", name,
			rangeText(s.CPUPer1000, "%.3f", 1), ratio, cratio,
			rangeText(s.LatencyP50, "%.0f", 1000), rangeText(s.LatencyP99, "%.0f", 1000), added,
			rangeText(s.RSSPerPod, "%.1f", 1e-3), rangeText(s.HeapGCPerPod, "%.1f", 1e-3),
			rangeText(s.Delivered, "%.0f", 1), rangeText(s.Coalesced, "%.0f", 1))
	}
	for _, s := range r.Summaries() {
		if s.BurstWrites.Max > 0 {
			fmt.Fprintf(w, "\nBurst, %s: %s writes at %s writes/s; latency p50 %s / p99 %s ms, median of the first tenth %s ms, of the last tenth %s ms.", s.Target,
				rangeText(s.BurstWrites, "%.0f", 1), rangeText(s.BurstRate, "%.0f", 1), rangeText(s.BurstP50, "%.0f", 1000), rangeText(s.BurstP99, "%.0f", 1000),
				rangeText(s.BurstEarly, "%.0f", 1000), rangeText(s.BurstLate, "%.0f", 1000))
			fmt.Fprintln(w)
		}
	}
	if sc := r.Scale; sc != nil {
		fmt.Fprintf(w, "\nScale, %s, %d pods created before the start: initial round read back %.1f s after the exec (%.1f CPU-s); RSS %.1f KB and heap after GC %.1f KB per pod (whole process).",
			sc.Target, sc.Pods, sc.InitialSeconds, sc.InitialCPUSeconds, sc.RSSPerPod/1000, sc.HeapAfterGCPerPod/1000)
		if sc.ReplaySeconds > 0 {
			fmt.Fprintf(w, " Replay round: %.1f s from REPLAY_BEGIN to REPLAY_END read back (%.1f CPU-s); %d live updates written during it: latency p50 %s, p99 %s, max %s.",
				sc.ReplaySeconds, sc.ReplayCPUSeconds, sc.LiveWrites, Seconds(sc.LiveP50, " "), Seconds(sc.LiveP99, " "), Seconds(sc.LiveMax, " "))
		}
		fmt.Fprintln(w)
	}
}

func (r *Report) floorOrFirst() Summary {
	ss := r.Summaries()
	for _, s := range ss {
		if s.Floor {
			return s
		}
	}
	if len(ss) == 0 {
		return Summary{}
	}
	return ss[0]
}

// rangeText prints a range scaled by scale: one value when both ends print
// alike, "min – max" otherwise, "-" when empty.
func rangeText(r Range, format string, scale float64) string {
	if math.IsNaN(r.Min) {
		return "-"
	}
	lo, hi := fmt.Sprintf(format, r.Min*scale), fmt.Sprintf(format, r.Max*scale)
	if lo == hi {
		return lo
	}
	return lo + " – " + hi
}

// WriteFiles writes results.json, results.md, latency-cdf.svg and cost.svg
// into dir.
func (r *Report) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	var md strings.Builder
	r.Markdown(&md)
	var cdf, cost strings.Builder
	ss := r.Summaries()
	LatencyCDF(&cdf, ss)
	CostBars(&cost, ss)
	for name, data := range map[string]string{"results.json": string(b) + "\n", "results.md": md.String(), "latency-cdf.svg": cdf.String(), "cost.svg": cost.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// Details writes every run's phases, one line each.
func (r *Report) Details(w io.Writer) {
	fmt.Fprintf(w, "\n| round | target | phase | writes | writes/s | events expected | read | coalesced | vanished pods | CPU-s | CPU-s / 1000 events | latency p50 / p99 / max |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, res := range r.Results {
		for _, p := range res.Phases {
			fmt.Fprintf(w, "| %d | %s | %s | %d | %.0f | %d | %d | %d | %d | %.2f | %.3f | %s / %s / %s |\n", res.Round, res.Target, p.Name, p.Writes, p.WritesPerSecond,
				p.EventsExpected, p.EventsDelivered, p.Coalesced, p.Vanished, p.CPUSeconds, p.CPUPer1000, Seconds(p.LatencyP50, " "), Seconds(p.LatencyP99, " "), Seconds(p.LatencyMax, " "))
		}
	}
	fmt.Fprintln(w)
	for _, res := range r.Results {
		fmt.Fprintf(w, "round %d, %s: idle RSS %.1f MiB, heap %.1f MiB, CPU %.4f s/s; log %s\n", res.Round, res.Target,
			float64(res.Idle.RSSBytes)/(1<<20), float64(res.Idle.HeapInuseBytes)/(1<<20), res.Idle.CPUPerSecond, res.Log)
	}
}

// ReadReport reads a report that WriteFiles saved as results.json, to
// render its table and plots again.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read report %s: %w", path, err)
	}
	return &r, nil
}
