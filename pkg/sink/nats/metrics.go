package nats

import "github.com/prometheus/client_golang/prometheus"

var descTrimmed = prometheus.NewDesc("kubestream_nats_oversized_trimmed_total",
	"Events published without some object states because they exceeded the server's or stream's message size.", nil, nil)

// Describe implements prometheus.Collector: kubestream run serves the sink's
// counters on /metrics.
func (s *Sink) Describe(ch chan<- *prometheus.Desc) { ch <- descTrimmed }

// Collect implements prometheus.Collector.
func (s *Sink) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descTrimmed, prometheus.CounterValue, float64(s.Trimmed()))
}
