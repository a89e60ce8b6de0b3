package loadtest

import (
	"math"
	"testing"
)

func TestQuantileNearestRank(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1) // 1..100
	}
	for _, c := range []struct {
		xs   []float64
		q    float64
		want float64
	}{
		{hundred, 0.50, 50},
		{hundred, 0.99, 99},
		{hundred, 1, 100},
		{hundred, 0.001, 1},
		{[]float64{7}, 0.99, 7},
		{[]float64{1, 2, 3, 4}, 0.5, 2},
		{[]float64{1, 2, 3, 4}, 0.51, 3},
	} {
		if got := Quantile(c.xs, c.q); got != c.want {
			t.Errorf("Quantile(%d values, %v) = %v, want %v", len(c.xs), c.q, got, c.want)
		}
	}
	if got := Quantile(nil, 0.5); !math.IsNaN(got) {
		t.Errorf("Quantile of nothing = %v, want NaN", got)
	}
}

func TestRangeOfIgnoresNaN(t *testing.T) {
	r := RangeOf([]float64{math.NaN(), 3, 1, 2})
	if r.Min != 1 || r.Max != 3 {
		t.Errorf("RangeOf = %+v, want 1..3", r)
	}
	if r := RangeOf([]float64{math.NaN()}); !math.IsNaN(r.Min) || !math.IsNaN(r.Max) {
		t.Errorf("RangeOf(NaN) = %+v, want NaN..NaN", r)
	}
}

func TestCDFThinsAndEndsAtOne(t *testing.T) {
	xs := make([]float64, 1000)
	for i := range xs {
		xs[i] = float64(i)
	}
	pts := CDF(xs, 100)
	if len(pts) < 100 || len(pts) > 102 {
		t.Fatalf("%d points, want about 100", len(pts))
	}
	if pts[0] != [2]float64{0, 0.001} {
		t.Errorf("first point %v, want [0 0.001]", pts[0])
	}
	if last := pts[len(pts)-1]; last != [2]float64{999, 1} {
		t.Errorf("last point %v, want [999 1]", last)
	}
	for i := 1; i < len(pts); i++ {
		if pts[i][0] < pts[i-1][0] || pts[i][1] <= pts[i-1][1] {
			t.Fatalf("points %d and %d not increasing: %v %v", i-1, i, pts[i-1], pts[i])
		}
	}
	if CDF(nil, 10) != nil {
		t.Error("CDF of nothing: want no points")
	}
}
