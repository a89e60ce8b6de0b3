package loadtest

import (
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
)

func churnResult(round int, target, sink string, cpu, p50, p99 float64) Result {
	return Result{Round: round, Target: target, Sink: sink, Cache: Memory{RSSPerPod: 2000 * cpu, HeapAfterGCPerPod: 1000},
		Phases: []Phase{
			{Name: "churn", CPUPer1000: cpu, LatencyP50: p50, LatencyP99: p99, EventsDelivered: 10000, Latencies: []float64{p50, p99}},
			{Name: "cache-create", CPUPer1000: cpu * 2},
		}}
}

func sampleReport() *Report {
	return &Report{
		Settings: Settings{Pods: 2000, CachePods: 2000, Rate: 500, Rounds: 2, Targets: []Target{Floor, {Name: "kubestream, kafka", Sink: SinkKafka}}},
		Results: []Result{
			churnResult(1, Floor.Name, SinkFloor, 0.1, 0.020, 0.080),
			churnResult(1, "kubestream, kafka", SinkKafka, 0.3, 0.030, 0.100),
			// Round 2 is slower for both: the ratio holds.
			churnResult(2, "kubestream, kafka", SinkKafka, 0.8, 0.050, 0.200),
			churnResult(2, Floor.Name, SinkFloor, 0.2, 0.040, 0.150),
		},
	}
}

func TestSummariesCompareWithTheSameRoundsFloor(t *testing.T) {
	ss := sampleReport().Summaries()
	if len(ss) != 2 || !ss[0].Floor || ss[1].Floor {
		t.Fatalf("summaries %+v: want the floor, then kafka", ss)
	}
	k := ss[1]
	if k.Rounds != 2 {
		t.Errorf("rounds %d, want 2", k.Rounds)
	}
	// 0.3/0.1 and 0.8/0.2: against the same round's floor, not the other's.
	if !near(k.CPUTimesFloor.Min, 3) || !near(k.CPUTimesFloor.Max, 4) {
		t.Errorf("× floor %+v, want 3..4", k.CPUTimesFloor)
	}
	if !near(k.AddedP50.Min, 0.010) || !near(k.AddedP50.Max, 0.010) || !near(k.AddedP99.Min, 0.020) || !near(k.AddedP99.Max, 0.050) {
		t.Errorf("added latency p50 %+v p99 %+v, want 10 ms and 20..50 ms", k.AddedP50, k.AddedP99)
	}
	if !near(k.CreateTimesFlr.Min, 3) || !near(k.CreateTimesFlr.Max, 4) {
		t.Errorf("creates × floor %+v, want 3..4", k.CreateTimesFlr)
	}
	if len(k.latencies) != 4 || k.latencies[0] != 0.030 || k.latencies[3] != 0.200 {
		t.Errorf("pooled latencies %v, want both rounds' sorted", k.latencies)
	}
}

func TestMarkdownTable(t *testing.T) {
	var b strings.Builder
	sampleReport().Markdown(&b)
	md := b.String()
	for _, want := range []string{
		"| **bare watch (floor)** | 0.100 – 0.200 | 1 | 1 |",
		"| kubestream, kafka | 0.300 – 0.800 | 3.00 – 4.00 | 3.00 – 4.00 | 30 – 50 / 100 – 200 ms | 10 / 20 – 50 ms |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
}

func TestPlotsAreSVG(t *testing.T) {
	ss := sampleReport().Summaries()
	for name, plot := range map[string]func(io.Writer, []Summary){"cdf": LatencyCDF, "cost": CostBars} {
		var b strings.Builder
		plot(&b, ss)
		d := xml.NewDecoder(strings.NewReader(b.String()))
		elems := map[string]int{}
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: not well-formed XML: %v", name, err)
			}
			if se, ok := tok.(xml.StartElement); ok {
				elems[se.Name.Local]++
				for _, a := range se.Attr {
					if strings.Contains(a.Value, "NaN") || strings.Contains(a.Value, "Inf") {
						t.Errorf("%s: <%s %s=%q>", name, se.Name.Local, a.Name.Local, a.Value)
					}
				}
			}
		}
		if elems["svg"] != 1 {
			t.Errorf("%s: %d svg elements", name, elems["svg"])
		}
		switch name {
		case "cdf":
			if elems["polyline"] != 2 {
				t.Errorf("cdf: %d lines, want one per target", elems["polyline"])
			}
		case "cost":
			if elems["rect"] != 1+2*2 { // background, two panels of two bars
				t.Errorf("cost: %d rects, want 5", elems["rect"])
			}
		}
	}
}

func TestRangeText(t *testing.T) {
	if got := rangeText(Range{Min: 0.1234, Max: 0.1236}, "%.3f", 1); got != "0.123 – 0.124" {
		t.Errorf("got %q", got)
	}
	if got := rangeText(Range{Min: 0.1231, Max: 0.1232}, "%.3f", 1); got != "0.123" {
		t.Errorf("got %q", got)
	}
	if got := rangeText(Range{Min: math.NaN(), Max: math.NaN()}, "%.3f", 1); got != "-" {
		t.Errorf("got %q", got)
	}
}
