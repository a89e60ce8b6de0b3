// Package alertbridge turns kubestream's image-storage events into
// Alertmanager alerts: it reads them from NATS JetStream or Kafka, posts
// firing and resolved alerts to Alertmanager's v2 API, re-sends firing
// alerts while they last, and acknowledges a message only after Alertmanager
// accepted what it said.
package alertbridge

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/imagestorage"
)

// AlertName is the alertname label of every alert the bridge sends.
const AlertName = "KubestreamImageStorage"

// Alert is one element of the body of POST /api/v2/alerts
// (Alertmanager's postableAlert).
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     *time.Time        `json:"startsAt,omitempty"`
	EndsAt       *time.Time        `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// severityLabel is the value of the severity label: Alertmanager routes
// conventionally match lower-case "warning" and "critical".
func severityLabel(s kubestreamv1.Severity) string {
	switch s {
	case kubestreamv1.Severity_SEVERITY_WARNING:
		return "warning"
	case kubestreamv1.Severity_SEVERITY_CRITICAL:
		return "critical"
	}
	return ""
}

var firingSeverities = []kubestreamv1.Severity{kubestreamv1.Severity_SEVERITY_WARNING, kubestreamv1.Severity_SEVERITY_CRITICAL}

// labels identify an alert: Alertmanager deduplicates on the label set, so
// they hold only what names the problem (not totals, which go into
// annotations).
func (b *Bridge) labels(ev *kubestreamv1.Event, sev kubestreamv1.Severity) map[string]string {
	l := make(map[string]string, len(b.opts.ExtraLabels)+4)
	for k, v := range b.opts.ExtraLabels {
		l[k] = v
	}
	l["alertname"] = AlertName
	l["node"] = ev.GetImageStorage().GetNode()
	l["severity"] = severityLabel(sev)
	if c := ev.GetCluster(); c != "" {
		l["cluster"] = c
	}
	return l
}

// annotations describe the node's image storage for humans and templates.
func annotations(ev *kubestreamv1.Event) map[string]string {
	is := ev.GetImageStorage()
	a := map[string]string{
		"summary":            summary(ev),
		"description":        is.GetReason(),
		"reason":             is.GetReason(),
		"total":              imagestorage.FormatBytes(is.GetTotalBytes()),
		"total_bytes":        strconv.FormatInt(is.GetTotalBytes(), 10),
		"previous_total":     imagestorage.FormatBytes(is.GetPreviousTotalBytes()),
		"delta":              signedBytes(is.GetDeltaBytes()),
		"delta_bytes":        strconv.FormatInt(is.GetDeltaBytes(), 10),
		"image_count":        strconv.Itoa(int(is.GetImageCount())),
		"transition":         strings.ToLower(strings.TrimPrefix(is.GetTransition().String(), "ALERT_TRANSITION_")),
		"previous_severity":  strings.ToLower(strings.TrimPrefix(is.GetPreviousSeverity().String(), "SEVERITY_")),
		"event_id":           ev.GetId(),
		"observed_at":        ev.GetObservedAt().AsTime().UTC().Format(time.RFC3339),
		"top_images":         topImages(is.GetTopImages()),
		"growth_per_hour":    imagestorage.FormatBytes(int64(is.GetGrowthBytesPerHour())) + "/h",
		"ephemeral_capacity": imagestorage.FormatBytes(is.GetEphemeralStorageCapacityBytes()),
	}
	if is.GetEphemeralStorageCapacityBytes() > 0 {
		a["capacity_share"] = fmt.Sprintf("%.1f%%", is.GetCapacityShare()*100)
	} else {
		a["capacity_share"] = "unknown (the node reports no ephemeral-storage capacity)"
	}
	if is.GetLowerBound() {
		a["lower_bound"] = fmt.Sprintf("true: the node reports only its %d largest images, totals may be higher", is.GetMaxImages())
	}
	if is.GetNodeDeleted() {
		a["node_deleted"] = "true"
	}
	for k, v := range a {
		if v == "" {
			delete(a, k)
		}
	}
	return a
}

func summary(ev *kubestreamv1.Event) string {
	is := ev.GetImageStorage()
	if is.GetNodeDeleted() {
		return fmt.Sprintf("Node %s was deleted", is.GetNode())
	}
	share := ""
	if is.GetEphemeralStorageCapacityBytes() > 0 {
		share = fmt.Sprintf(" (%.1f%% of ephemeral-storage capacity)", is.GetCapacityShare()*100)
	}
	state := "back below thresholds"
	if s := severityLabel(is.GetSeverity()); s != "" {
		state = "at " + s
	}
	return fmt.Sprintf("Container images on node %s take %s%s: %s", is.GetNode(), imagestorage.FormatBytes(is.GetTotalBytes()), share, state)
}

func signedBytes(n int64) string {
	if n > 0 {
		return "+" + imagestorage.FormatBytes(n)
	}
	return imagestorage.FormatBytes(n)
}

func topImages(imgs []*kubestreamv1.Image) string {
	parts := make([]string, 0, len(imgs))
	for _, img := range imgs {
		parts = append(parts, displayName(img.GetNames())+" "+imagestorage.FormatBytes(img.GetSizeBytes()))
	}
	return strings.Join(parts, ", ")
}

// displayName prefers a tag ("reg/app:v1") over a digest, which says less to
// a human.
func displayName(names []string) string {
	if len(names) == 0 {
		return "<unnamed>"
	}
	sorted := append([]string(nil), names...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return !strings.Contains(sorted[i], "@") && strings.Contains(sorted[j], "@")
	})
	return sorted[0]
}
