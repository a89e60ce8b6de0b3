package alertbridge

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the bridge's counters as Prometheus series (docs/metrics.md).
func (b *Bridge) Metrics() prometheus.Collector { return bridgeCollector{b} }

var (
	descEvents   = prometheus.NewDesc("kubestream_alertbridge_events_total", "Image-storage events handled.", nil, nil)
	descPosts    = prometheus.NewDesc("kubestream_alertbridge_posts_total", "POSTs Alertmanager accepted, re-sends of firing alerts included.", nil, nil)
	descRetries  = prometheus.NewDesc("kubestream_alertbridge_retries_total", "POSTs that failed and were retried.", nil, nil)
	descRejected = prometheus.NewDesc("kubestream_alertbridge_rejected_total", "Events whose alerts Alertmanager refused as malformed; acknowledged and dropped.", nil, nil)
	descSkipped  = prometheus.NewDesc("kubestream_alertbridge_skipped_total", "Messages that were not image-storage events or could not be decoded; acknowledged and dropped.", nil, nil)
	descFiring   = prometheus.NewDesc("kubestream_alertbridge_firing_alerts", "Firing alerts the bridge re-sends.", nil, nil)
)

type bridgeCollector struct{ b *Bridge }

func (c bridgeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEvents, descPosts, descRetries, descRejected, descSkipped, descFiring} {
		ch <- d
	}
}

func (c bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Stats()
	for _, m := range []struct {
		d *prometheus.Desc
		v int64
	}{{descEvents, st.Events}, {descPosts, st.Posts}, {descRetries, st.Retries}, {descRejected, st.Rejected}, {descSkipped, st.Skipped}} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v))
	}
	ch <- prometheus.MustNewConstMetric(descFiring, prometheus.GaugeValue, float64(c.b.Firing()))
}
