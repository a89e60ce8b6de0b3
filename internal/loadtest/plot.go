package loadtest

import (
	"fmt"
	"html"
	"io"
	"math"
)

// The plots are plain SVG, written here so the harness needs no plotting
// library: a latency CDF and bars of CPU and memory per target.

var palette = []string{"#555555", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"}

func color(i int, floor bool) string {
	if floor {
		return palette[0]
	}
	return palette[1+(i%(len(palette)-1))]
}

// LatencyCDF plots, per target, the share of churn events read within a
// latency (from sending the write), on a logarithmic time axis.
func LatencyCDF(w io.Writer, ss []Summary) {
	const width, height, left, right, top, bottom = 720, 400, 60, 230, 20, 50
	lo, hi := 1e-3, 1e-3
	for _, s := range ss {
		if n := len(s.latencies); n > 0 {
			hi = math.Max(hi, s.latencies[n-1])
		}
	}
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	x := func(v float64) float64 {
		v = math.Max(v, lo)
		return left + (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*(width-left-right)
	}
	y := func(q float64) float64 { return top + (1-q)*(height-top-bottom) }
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(w, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	for d := lo; d <= hi*1.0001; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := d * m
			if v > hi*1.0001 {
				break
			}
			fmt.Fprintf(w, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x(v), top, x(v), height-bottom)
			if m == 1 { // label the decades only: 1, 2, 5 crowd the axis
				fmt.Fprintf(w, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(v), height-bottom+16, decade(v))
			}
		}
	}
	for _, q := range []float64{0, 0.25, 0.5, 0.75, 0.9, 1} {
		fmt.Fprintf(w, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(q), width-right, y(q))
		fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", left-6, y(q)+4, q)
	}
	fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="middle">latency from sending the write to reading its event (log scale)</text>`+"\n", (left+width-right)/2, height-12)
	fmt.Fprintf(w, `<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">share of events</text>`+"\n", (top+height-bottom)/2, (top+height-bottom)/2)
	for i, s := range ss {
		pts := CDF(s.latencies, 400)
		if len(pts) == 0 {
			continue
		}
		fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="2" points="`, color(i, s.Floor))
		for _, p := range pts {
			fmt.Fprintf(w, "%.1f,%.1f ", x(p[0]), y(p[1]))
		}
		fmt.Fprintln(w, `"/>`)
		ly := top + 10 + i*18
		fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", width-right+10, ly, width-right+30, ly, color(i, s.Floor))
		fmt.Fprintf(w, `<text x="%d" y="%d">%s</text>`+"\n", width-right+36, ly+4, html.EscapeString(s.Target))
	}
	fmt.Fprintln(w, "</svg>")
}

func decade(s float64) string {
	if s >= 1 {
		return fmt.Sprintf("%.0f s", s)
	}
	return fmt.Sprintf("%.0f ms", s*1000)
}

// CostBars draws two panels of horizontal bars, one bar per target: CPU
// seconds per 1000 churn events and RSS per cached pod, each bar the mean
// of the rounds' range with a whisker from its min to its max, the floor
// in grey.
func CostBars(w io.Writer, ss []Summary) {
	// Each panel leaves room right of its longest bar for the range label.
	const width, left, barH, gap, panelW, barMax = 730, 210, 18, 8, 260, 150
	height := 60 + len(ss)*(barH+gap)
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(w, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	panels := []struct {
		title string
		get   func(Summary) Range
		unit  string
		scale float64
	}{
		{"CPU-s per 1000 events (churn)", func(s Summary) Range { return s.CPUPer1000 }, "%.3f", 1},
		{"RSS per cached pod, KB", func(s Summary) Range { return s.RSSPerPod }, "%.1f", 1e-3},
	}
	for pi, p := range panels {
		x0 := float64(left + pi*panelW)
		maxV := 0.0
		for _, s := range ss {
			if r := p.get(s); !math.IsNaN(r.Max) {
				maxV = math.Max(maxV, r.Max)
			}
		}
		if maxV <= 0 {
			maxV = 1
		}
		fmt.Fprintf(w, `<text x="%.1f" y="20">%s</text>`+"\n", x0, html.EscapeString(p.title))
		for i, s := range ss {
			yy := 34 + i*(barH+gap)
			if pi == 0 {
				fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, yy+barH-5, html.EscapeString(s.Target))
			}
			r := p.get(s)
			if math.IsNaN(r.Min) {
				continue
			}
			mid := (r.Min + r.Max) / 2
			bw := math.Max(0, mid) / maxV * barMax
			fmt.Fprintf(w, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, yy, bw, barH, color(i, s.Floor))
			if r.Max > r.Min {
				fmt.Fprintf(w, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n",
					x0+math.Max(0, r.Min)/maxV*barMax, yy+barH/2, x0+r.Max/maxV*barMax, yy+barH/2)
			}
			fmt.Fprintf(w, `<text x="%.1f" y="%d">%s</text>`+"\n", x0+r.Max/maxV*barMax+4, yy+barH-5, html.EscapeString(rangeText(r, p.unit, p.scale)))
		}
	}
	fmt.Fprintf(w, `<text x="%d" y="%d" fill="#555">grey: the bare watch (floor) measured in the same run; whiskers: range over rounds</text>`+"\n", left, height-8)
	fmt.Fprintln(w, "</svg>")
}
