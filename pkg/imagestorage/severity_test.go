package imagestorage

import (
	"strings"
	"testing"
	"time"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

type step struct {
	m       Measures
	sev     kubestreamv1.Severity
	tr      kubestreamv1.AlertTransition
	inWhy   string
	comment string
}

const (
	none       = kubestreamv1.AlertTransition_ALERT_TRANSITION_NONE
	firing     = kubestreamv1.AlertTransition_ALERT_TRANSITION_FIRING
	resolved   = kubestreamv1.AlertTransition_ALERT_TRANSITION_RESOLVED
	downgraded = kubestreamv1.AlertTransition_ALERT_TRANSITION_DOWNGRADED
)

func b(gib float64) Measures { return Measures{Bytes: int64(gib * float64(gi))} }

func TestJudgeWithHysteresis(t *testing.T) {
	bytesOpts := Options{WarningBytes: 10 * gi, CriticalBytes: 20 * gi, ResolveMargin: 0.05, GrowthWindow: time.Hour}
	shareOpts := Options{WarningShare: 0.6, CriticalShare: 0.8, ResolveMargin: 0.05, GrowthWindow: time.Hour}
	growthOpts := Options{WarningGrowth: float64(5 * gi), CriticalGrowth: float64(20 * gi), ResolveMargin: 0.05, GrowthWindow: time.Hour}
	share := func(used float64, capGi int64) Measures {
		return Measures{Bytes: int64(used * float64(gi)), CapacityBytes: capGi * gi, Share: used / float64(capGi)}
	}
	grow := func(gibPerHour float64) Measures {
		return Measures{Bytes: 50 * gi, Growth: gibPerHour * float64(gi), GrowthKnown: true}
	}
	tests := []struct {
		name  string
		opts  Options
		steps []step
	}{
		{"grow through both thresholds", bytesOpts, []step{
			{m: b(5), sev: ok, tr: none, inWhy: "below thresholds"},
			{m: b(10), sev: warning, tr: firing, inWhy: "image bytes 10GiB >= warning 10GiB"},
			{m: b(15), sev: warning, tr: none},
			{m: b(20), sev: critical, tr: firing, inWhy: "image bytes 20GiB >= critical 20GiB"},
			{m: b(30), sev: critical, tr: none},
		}},
		{"shrink back needs the margin", bytesOpts, []step{
			{m: b(21), sev: critical, tr: firing},
			{m: b(19.5), sev: critical, tr: none, inWhy: "still critical: resolves below 19GiB (critical 20GiB minus 5% margin)"},
			{m: b(18.9), sev: warning, tr: downgraded, inWhy: ">= warning 10GiB"},
			{m: b(9.6), sev: warning, tr: none, inWhy: "still warning: resolves below 9.5GiB"},
			{m: b(9.4), sev: ok, tr: resolved},
		}},
		{"cross both ways in one step", bytesOpts, []step{
			{m: b(1), sev: ok, tr: none},
			{m: b(25), sev: critical, tr: firing},
			{m: b(1), sev: ok, tr: resolved},
		}},
		{"hover at the warning threshold fires once", bytesOpts, []step{
			{m: b(9.9), sev: ok, tr: none},
			{m: b(10), sev: warning, tr: firing},
			{m: b(9.9), sev: warning, tr: none},
			{m: b(10.1), sev: warning, tr: none},
			{m: b(9.8), sev: warning, tr: none},
			{m: b(10), sev: warning, tr: none},
			{m: b(9.49), sev: ok, tr: resolved},
			{m: b(9.9), sev: ok, tr: none, comment: "below the threshold again: no re-fire"},
		}},
		{"hover at the critical threshold", bytesOpts, []step{
			{m: b(20), sev: critical, tr: firing},
			{m: b(19.9), sev: critical, tr: none},
			{m: b(20.1), sev: critical, tr: none},
			{m: b(19.1), sev: critical, tr: none},
		}},
		{"share of capacity", shareOpts, []step{
			{m: share(50, 100), sev: ok, tr: none, inWhy: "50.0% of ephemeral-storage capacity 100GiB"},
			{m: share(61, 100), sev: warning, tr: firing, inWhy: "share of ephemeral-storage capacity 61.0% >= warning 60.0% (capacity 100GiB)"},
			{m: share(80, 100), sev: critical, tr: firing},
			{m: share(77, 100), sev: critical, tr: none},
			{m: share(75, 100), sev: warning, tr: downgraded},
			{m: share(56, 100), sev: ok, tr: resolved},
		}},
		{"missing capacity is not judged by share", shareOpts, []step{
			{m: Measures{Bytes: 900 * gi}, sev: ok, tr: none, inWhy: "share not judged: the node reports no ephemeral-storage capacity"},
		}},
		{"growth rate", growthOpts, []step{
			{m: Measures{Bytes: 50 * gi}, sev: ok, tr: none, comment: "not enough history"},
			{m: grow(1), sev: ok, tr: none, inWhy: "growth 1GiB/h over 1h"},
			{m: grow(6), sev: warning, tr: firing, inWhy: "growth over 1h 6GiB/h >= warning 5GiB/h"},
			{m: grow(25), sev: critical, tr: firing},
			{m: grow(-3), sev: ok, tr: resolved},
		}},
		{"the highest measure wins and resolving needs all below", Options{WarningBytes: 10 * gi, CriticalShare: 0.8, ResolveMargin: 0.05, GrowthWindow: time.Hour}, []step{
			{m: share(85, 100), sev: critical, tr: firing},
			{m: share(78, 100), sev: critical, tr: none},
			{m: share(70, 100), sev: warning, tr: downgraded, inWhy: "image bytes 70GiB >= warning 10GiB"},
			{m: share(9.6, 100), sev: warning, tr: none},
			{m: share(9, 100), sev: ok, tr: resolved},
		}},
		{"no margin", Options{WarningBytes: 10 * gi, GrowthWindow: time.Hour}, []step{
			{m: b(10), sev: warning, tr: firing},
			{m: b(9.99), sev: ok, tr: resolved},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := kubestreamv1.Severity_SEVERITY_UNSPECIFIED
			for i, s := range tt.steps {
				sev, why := tt.opts.Judge(prev, s.m)
				tr := Transition(prev, sev)
				if sev != s.sev || tr != s.tr || !strings.Contains(why, s.inWhy) {
					t.Fatalf("step %d (%d bytes, %s): got %v %v %q, want %v %v containing %q", i, s.m.Bytes, s.comment, sev, tr, why, s.sev, s.tr, s.inWhy)
				}
				prev = sev
			}
		})
	}
}

func TestTransition(t *testing.T) {
	unspec := kubestreamv1.Severity_SEVERITY_UNSPECIFIED
	for _, tt := range []struct {
		prev, cur kubestreamv1.Severity
		want      kubestreamv1.AlertTransition
	}{
		{unspec, ok, none}, {unspec, warning, firing}, {unspec, critical, firing},
		{ok, ok, none}, {ok, warning, firing}, {warning, critical, firing},
		{critical, warning, downgraded}, {critical, ok, resolved}, {warning, ok, resolved},
		{critical, critical, none},
	} {
		if got := Transition(tt.prev, tt.cur); got != tt.want {
			t.Errorf("Transition(%v, %v) = %v, want %v", tt.prev, tt.cur, got, tt.want)
		}
	}
}
