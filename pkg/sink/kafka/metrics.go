package kafka

import "github.com/prometheus/client_golang/prometheus"

var (
	descRecords      = prometheus.NewDesc("kubestream_kafka_records_total", "Records Kafka acknowledged, tombstones and replay-marker copies included.", nil, nil)
	descTombstones   = prometheus.NewDesc("kubestream_kafka_tombstones_total", "Tombstones Kafka acknowledged.", nil, nil)
	descMarkerCopies = prometheus.NewDesc("kubestream_kafka_marker_copies_total", "Replay-marker copies acknowledged, one per partition and marker.", nil, nil)
	descCompressed   = prometheus.NewDesc("kubestream_kafka_oversized_compressed_total", "Events too large for a batch, accepted once compressed alone.", nil, nil)
	descTrimmed      = prometheus.NewDesc("kubestream_kafka_oversized_trimmed_total", "Events published without some object states because they were too large.", nil, nil)
	descTooLarge     = prometheus.NewDesc("kubestream_kafka_oversized_failed_total", "Events that never fit, even without object states.", nil, nil)
)

// Describe implements prometheus.Collector: kubestream run serves the sink's
// counters on /metrics.
func (s *Sink) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRecords, descTombstones, descMarkerCopies, descCompressed, descTrimmed, descTooLarge} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *Sink) Collect(ch chan<- prometheus.Metric) {
	st := s.Stats()
	for _, m := range []struct {
		d *prometheus.Desc
		v uint64
	}{
		{descRecords, st.Records}, {descTombstones, st.Tombstones}, {descMarkerCopies, st.MarkerCopies},
		{descCompressed, st.Compressed}, {descTrimmed, st.Trimmed}, {descTooLarge, st.TooLarge},
	} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v))
	}
}
