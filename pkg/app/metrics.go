package app

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/source"
)

// streamMetrics are the per-kind and per-round series the dashboard and
// alerts read (docs/metrics.md); the pipeline's totals live in pkg/server.
type streamMetrics struct {
	events *prometheus.CounterVec
	// eventCounters caches events' series by kind and operation: finding
	// one by its label strings costs more than the rest of counting.
	eventCounters sync.Map // eventSeries -> prometheus.Counter
	rounds        *prometheus.CounterVec
	firstRound    *prometheus.GaugeVec
	initialDone   prometheus.Gauge
}

func newStreamMetrics(reg prometheus.Registerer) *streamMetrics {
	m := &streamMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kubestream", Name: "events_total",
			Help: "Events the broker acknowledged, by object kind (ImageStorage for derived events, empty for replay markers) and operation."},
			[]string{"kind", "operation"}),
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kubestream", Name: "replay_rounds_total",
			Help: "Replay rounds whose end marker the broker acknowledged, by reason (initial, resume, resync)."},
			[]string{"reason"}),
		firstRound: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "kubestream", Name: "first_round_objects",
			Help: "What this replica's first round sent, by kind and result: snapshot (a full round), or the difference against the saved positions (created, updated, deleted, unchanged)."},
			[]string{"kind", "result"}),
		initialDone: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "kubestream", Name: "initial_round_delivered",
			Help: "1 once the broker acknowledged the end marker of this replica's first round (initial or resume), else 0."}),
	}
	reg.MustRegister(m.events, m.rounds, m.firstRound, m.initialDone)
	return m
}

// acknowledged counts one event the broker acknowledged.
func (m *streamMetrics) acknowledged(ev *kubestreamv1.Event) {
	kind := ev.GetObject().GetKind()
	if ev.GetImageStorage() != nil {
		kind = "ImageStorage"
	}
	m.eventCounter(kind, ev.GetOperation()).Inc()
	if ev.GetOperation() != kubestreamv1.Operation_OPERATION_REPLAY_END {
		return
	}
	reason := ev.GetReplay().GetReason()
	m.rounds.WithLabelValues(strings.ToLower(strings.TrimPrefix(reason.String(), "REPLAY_REASON_"))).Inc()
	if reason == kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL || reason == kubestreamv1.ReplayReason_REPLAY_REASON_RESUME {
		m.initialDone.Set(1)
	}
}

type eventSeries struct {
	kind string
	op   kubestreamv1.Operation
}

func (m *streamMetrics) eventCounter(kind string, op kubestreamv1.Operation) prometheus.Counter {
	key := eventSeries{kind, op}
	if c, ok := m.eventCounters.Load(key); ok {
		return c.(prometheus.Counter)
	}
	c := m.events.WithLabelValues(kind, strings.ToLower(strings.TrimPrefix(op.String(), "OPERATION_")))
	m.eventCounters.Store(key, c)
	return c
}

// activated records what the first round sent.
func (m *streamMetrics) activated(st source.ActivateStats) {
	for result, counts := range map[string]map[string]int64{"snapshot": st.Snapshots, "created": st.Created,
		"updated": st.Updated, "deleted": st.Deleted, "unchanged": st.Equal} {
		for kind, n := range counts {
			m.firstRound.WithLabelValues(kind, result).Set(float64(n))
		}
	}
}
