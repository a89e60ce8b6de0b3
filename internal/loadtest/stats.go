package loadtest

import (
	"math"
	"slices"
)

// Quantile is the q-quantile (0 < q <= 1) of sorted by the nearest-rank
// method: the smallest value with at least q of the values at or below it.
// NaN for no values.
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Range is the smallest and largest of some figures over rounds.
type Range struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// RangeOf is the range of xs, ignoring NaNs; NaN..NaN when none is left.
func RangeOf(xs []float64) Range {
	r := Range{Min: math.NaN(), Max: math.NaN()}
	for _, x := range xs {
		if math.IsNaN(x) {
			continue
		}
		if math.IsNaN(r.Min) || x < r.Min {
			r.Min = x
		}
		if math.IsNaN(r.Max) || x > r.Max {
			r.Max = x
		}
	}
	return r
}

// CDF thins sorted values to at most n points (value, share of values at
// or below it) for a plot, always keeping the first and the last.
func CDF(sorted []float64, n int) [][2]float64 {
	if len(sorted) == 0 || n < 2 {
		return nil
	}
	step := max(1, len(sorted)/n)
	var pts [][2]float64
	for i := 0; i < len(sorted); i += step {
		pts = append(pts, [2]float64{sorted[i], float64(i+1) / float64(len(sorted))})
	}
	if last := len(sorted) - 1; pts[len(pts)-1][0] != sorted[last] || pts[len(pts)-1][1] != 1 {
		pts = append(pts, [2]float64{sorted[last], 1})
	}
	return pts
}

func sortedCopy(xs []float64) []float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s
}
