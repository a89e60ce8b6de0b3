package imagestorage

import (
	"fmt"
	"strings"
	"time"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

const (
	ok       = kubestreamv1.Severity_SEVERITY_OK
	warning  = kubestreamv1.Severity_SEVERITY_WARNING
	critical = kubestreamv1.Severity_SEVERITY_CRITICAL
)

// Measures are what a node is judged by.
type Measures struct {
	Bytes int64
	// Share of ephemeral-storage capacity; judged only when CapacityBytes > 0.
	Share         float64
	CapacityBytes int64
	// Growth in bytes per hour; judged only when GrowthKnown.
	Growth      float64
	GrowthKnown bool
}

// check is one measure against its two thresholds.
type check struct {
	value           float64
	warn, crit      float64
	render          func(v float64) string
	name, extraNote string
}

// Judge returns the severity of m given the previous severity, and a reason
// a human can act on.
//
// Hysteresis: a level is entered when a measure reaches its threshold, and
// kept while the measure stays at or above threshold * (1 - ResolveMargin).
// So CRITICAL falls to WARNING only below the critical threshold minus the
// margin, and WARNING to OK only when every measure is below its warning
// threshold minus the margin. A node hovering at a threshold therefore
// changes severity once, not on every report.
func (o *Options) Judge(prev kubestreamv1.Severity, m Measures) (kubestreamv1.Severity, string) {
	sev := o.Severity(prev, m)
	return sev, o.reason(prev, sev, m)
}

// Severity is Judge without the reason: cheap enough for every heartbeat.
func (o *Options) Severity(prev kubestreamv1.Severity, m Measures) kubestreamv1.Severity {
	sev := ok
	for _, c := range o.checks(m, false) {
		if lvl := o.level(prev, c); lvl > sev {
			sev = lvl
		}
	}
	return sev
}

func (o *Options) level(prev kubestreamv1.Severity, c check) kubestreamv1.Severity {
	keep := 1 - o.ResolveMargin
	switch {
	case c.crit > 0 && c.value >= c.crit, c.crit > 0 && prev >= critical && c.value >= c.crit*keep:
		return critical
	case c.warn > 0 && c.value >= c.warn, c.warn > 0 && prev >= warning && c.value >= c.warn*keep:
		return warning
	}
	return ok
}

// checks lists the measures that apply to m; withText adds what reasons need.
func (o *Options) checks(m Measures, withText bool) []check {
	cs := make([]check, 0, 3)
	c := check{value: float64(m.Bytes), warn: float64(o.WarningBytes), crit: float64(o.CriticalBytes)}
	if withText {
		c.name, c.render = "image bytes", func(v float64) string { return FormatBytes(int64(v)) }
	}
	cs = append(cs, c)
	if m.CapacityBytes > 0 {
		c := check{value: m.Share, warn: o.WarningShare, crit: o.CriticalShare}
		if withText {
			c.name, c.render = "share of ephemeral-storage capacity", func(v float64) string { return fmt.Sprintf("%.1f%%", v*100) }
			c.extraNote = " (capacity " + FormatBytes(m.CapacityBytes) + ")"
		}
		cs = append(cs, c)
	}
	if m.GrowthKnown {
		c := check{value: m.Growth, warn: o.WarningGrowth, crit: o.CriticalGrowth}
		if withText {
			c.name, c.render = "growth over "+shortDuration(o.GrowthWindow), func(v float64) string { return FormatBytes(int64(v)) + "/h" }
		}
		cs = append(cs, c)
	}
	return cs
}

// reason says why m is at sev: every measure at that level, or the numbers
// when all is well.
func (o *Options) reason(prev, sev kubestreamv1.Severity, m Measures) string {
	if sev > ok {
		keep := 1 - o.ResolveMargin
		var reasons []string
		for _, c := range o.checks(m, true) {
			if o.level(prev, c) != sev {
				continue
			}
			var why string
			switch {
			case sev == critical && c.value >= c.crit:
				why = fmt.Sprintf("%s %s >= critical %s", c.name, c.render(c.value), c.render(c.crit))
			case sev == critical:
				why = fmt.Sprintf("%s %s still critical: resolves below %s (critical %s minus %s margin)", c.name, c.render(c.value), c.render(c.crit*keep), c.render(c.crit), percent(o.ResolveMargin))
			case c.value >= c.warn:
				why = fmt.Sprintf("%s %s >= warning %s", c.name, c.render(c.value), c.render(c.warn))
			default:
				why = fmt.Sprintf("%s %s still warning: resolves below %s (warning %s minus %s margin)", c.name, c.render(c.value), c.render(c.warn*keep), c.render(c.warn), percent(o.ResolveMargin))
			}
			reasons = append(reasons, why+c.extraNote)
		}
		return strings.Join(reasons, "; ")
	}
	parts := []string{"image bytes " + FormatBytes(m.Bytes)}
	if m.CapacityBytes > 0 {
		parts = append(parts, fmt.Sprintf("%.1f%% of ephemeral-storage capacity %s", m.Share*100, FormatBytes(m.CapacityBytes)))
	} else if o.WarningShare > 0 || o.CriticalShare > 0 {
		parts = append(parts, "share not judged: the node reports no ephemeral-storage capacity")
	}
	if m.GrowthKnown {
		parts = append(parts, fmt.Sprintf("growth %s/h over %s", FormatBytes(int64(m.Growth)), shortDuration(o.GrowthWindow)))
	}
	return strings.Join(parts, ", ") + ": below thresholds"
}

// Transition classifies a severity change.
func Transition(prev, cur kubestreamv1.Severity) kubestreamv1.AlertTransition {
	if prev == kubestreamv1.Severity_SEVERITY_UNSPECIFIED {
		prev = ok
	}
	switch {
	case cur == prev:
		return kubestreamv1.AlertTransition_ALERT_TRANSITION_NONE
	case cur > prev:
		return kubestreamv1.AlertTransition_ALERT_TRANSITION_FIRING
	case cur == ok:
		return kubestreamv1.AlertTransition_ALERT_TRANSITION_RESOLVED
	default:
		return kubestreamv1.AlertTransition_ALERT_TRANSITION_DOWNGRADED
	}
}

func percent(f float64) string {
	s := fmt.Sprintf("%.1f", f*100)
	return strings.TrimSuffix(s, ".0") + "%"
}

func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
