package tail

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/event"
)

// Format is how events are printed.
type Format int

const (
	// JSON prints one protojson kubestream.v1.Event per line, as the stdout
	// sink does: for jq and other programs.
	JSON Format = iota
	// Text prints one short line per event, for people.
	Text
)

// ParseFormat reads --output.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "json":
		return JSON, nil
	case "text":
		return Text, nil
	}
	return 0, fmt.Errorf("--output %q is unknown: use json or text", s)
}

// Printer writes events to w in a format.
type Printer struct {
	w      *bufio.Writer
	format Format
	// Location of times in text lines. Default time.Local.
	Location *time.Location
}

// NewPrinter returns a printer; call Flush when done or idle.
func NewPrinter(w io.Writer, f Format) *Printer {
	return &Printer{w: bufio.NewWriter(w), format: f, Location: time.Local}
}

// Print writes one event.
func (p *Printer) Print(ev *kubestreamv1.Event) error {
	var line []byte
	if p.format == JSON {
		b, err := protojson.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode event %s as JSON: %w", ev.GetId(), err)
		}
		line = b
	} else {
		line = []byte(TextLine(ev, p.Location))
	}
	p.w.Write(line)
	return p.w.WriteByte('\n')
}

// Flush writes buffered lines.
func (p *Printer) Flush() error { return p.w.Flush() }

// TextLine renders an event for people:
//
//	15:04:05.000 updated      pods          payments/api-7d9f  spec.replicas, metadata.labels.app
func TextLine(ev *kubestreamv1.Event, loc *time.Location) string {
	if loc == nil {
		loc = time.Local
	}
	ts := ev.GetObservedAt().AsTime().In(loc).Format("15:04:05.000")
	op := event.OpName(ev.GetOperation())
	if r := ev.GetReplay(); r != nil {
		return fmt.Sprintf("%s %-12s %-13s %s", ts, op, "replay", replayDetail(r))
	}
	if hb := ev.GetHeartbeat(); hb != nil {
		return fmt.Sprintf("%s %-12s %-13s %s", ts, op, hb.GetResource(), heartbeatDetail(hb))
	}
	obj := ev.GetObject()
	id := obj.GetName()
	if obj.GetNamespace() != "" {
		id = obj.GetNamespace() + "/" + id
	}
	detail := ""
	if s := ev.GetImageStorage(); s != nil {
		detail = imageStorageDetail(s)
	} else {
		detail = changeDetail(ev.GetOperation(), ev.GetChange())
	}
	return strings.TrimRight(fmt.Sprintf("%s %-12s %-13s %s  %s", ts, op, event.Resource(ev), id, detail), " ")
}

// heartbeatDetail reads "complete up to resourceVersion 4711, 120 objects",
// with the keys still pending if any.
func heartbeatDetail(hb *kubestreamv1.Heartbeat) string {
	rv := hb.GetResourceVersion()
	if rv == "" {
		rv = "unknown"
	}
	s := fmt.Sprintf("complete up to resourceVersion %s, %d objects", rv, hb.GetObjectCount())
	if hb.GetPendingKeysTruncated() {
		return s + ", many keys pending"
	}
	if len(hb.GetPendingKeys()) > 0 {
		s += " except pending " + strings.Join(hb.GetPendingKeys(), ",")
	}
	return s
}

func replayDetail(r *kubestreamv1.ReplayMarker) string {
	reason := strings.ToLower(strings.TrimPrefix(r.GetReason().String(), "REPLAY_REASON_"))
	s := fmt.Sprintf("%s round %s kinds=%s", reason, r.GetReplayId(), strings.Join(r.GetKinds(), ","))
	if len(r.GetObjectCounts()) > 0 {
		keys := make([]string, 0, len(r.GetObjectCounts()))
		for k := range r.GetObjectCounts() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s:%d", k, r.GetObjectCounts()[k])
		}
		s += " objects=" + strings.Join(parts, ",")
	}
	return s
}

func changeDetail(op kubestreamv1.Operation, c *kubestreamv1.ObjectChange) string {
	var parts []string
	if op == kubestreamv1.Operation_OPERATION_UPDATED {
		paths := c.GetChangedPaths()
		const show = 6
		if len(paths) > show {
			parts = append(parts, strings.Join(paths[:show], ", ")+fmt.Sprintf(" (+%d more)", len(paths)-show))
		} else if len(paths) > 0 {
			parts = append(parts, strings.Join(paths, ", "))
		} else {
			parts = append(parts, "(no field changes)")
		}
	} else if s := summary(c); s != "" {
		parts = append(parts, s)
	}
	if c.GetFinalStateUnknown() {
		parts = append(parts, "[final state unknown]")
	}
	if c.GetTruncated() {
		parts = append(parts, "[truncated]")
	}
	return strings.Join(parts, " ")
}

func summary(c *kubestreamv1.ObjectChange) string {
	switch {
	case c.GetPod() != nil:
		p := c.GetPod()
		s := fmt.Sprintf("phase=%s", orDash(p.GetPhase()))
		if p.GetNodeName() != "" {
			s += " node=" + p.GetNodeName()
		}
		if len(p.GetImages()) > 0 {
			s += " images=" + strings.Join(p.GetImages(), ",")
		}
		return s
	case c.GetDeployment() != nil:
		d := c.GetDeployment()
		return fmt.Sprintf("replicas=%d/%d images=%s", d.GetReadyReplicas(), d.GetDesiredReplicas(), strings.Join(d.GetImages(), ","))
	case c.GetConfigMap() != nil:
		cm := c.GetConfigMap()
		return fmt.Sprintf("keys=%d hash=%.12s", len(cm.GetKeys()), cm.GetDataHash())
	case c.GetNode() != nil:
		n := c.GetNode()
		return fmt.Sprintf("ready=%v images=%d (%s)", n.GetReady(), n.GetImageCount(), bytesIEC(n.GetImageBytes()))
	}
	return ""
}

func imageStorageDetail(s *kubestreamv1.ImageStorage) string {
	sign := "+"
	delta := s.GetDeltaBytes()
	if delta < 0 {
		sign, delta = "-", -delta
	}
	out := fmt.Sprintf("%s in %d images (%s%s)", bytesIEC(s.GetTotalBytes()), s.GetImageCount(), sign, bytesIEC(delta))
	if s.GetLowerBound() {
		out += " at least"
	}
	if sev := s.GetSeverity(); sev != kubestreamv1.Severity_SEVERITY_UNSPECIFIED {
		out += " severity=" + strings.TrimPrefix(sev.String(), "SEVERITY_")
	}
	switch s.GetTransition() {
	case kubestreamv1.AlertTransition_ALERT_TRANSITION_FIRING, kubestreamv1.AlertTransition_ALERT_TRANSITION_RESOLVED, kubestreamv1.AlertTransition_ALERT_TRANSITION_DOWNGRADED:
		out += " " + strings.ToLower(strings.TrimPrefix(s.GetTransition().String(), "ALERT_TRANSITION_"))
	}
	if s.GetReason() != "" {
		out += ": " + s.GetReason()
	}
	if n, r := len(s.GetAdded()), len(s.GetRemoved()); n+r > 0 {
		out += fmt.Sprintf(" (+%d/-%d images)", n, r)
	}
	if s.GetNodeDeleted() {
		out += " [node deleted]"
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
