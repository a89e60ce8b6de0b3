package kafka_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubestream/kubestream/pkg/kinds"
)

func TestSinkCountersAreMetrics(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	o.Tombstones = true
	s := openSink(t, ctx, o)
	web := pod("shop", "web", "uid-web", "5")
	publish(t, ctx, s, created(kinds.Pods, web), deleted(kinds.Pods, web))

	reg := prometheus.NewRegistry()
	reg.MustRegister(s)
	want := `
# HELP kubestream_kafka_records_total Records Kafka acknowledged, tombstones and replay-marker copies included.
# TYPE kubestream_kafka_records_total counter
kubestream_kafka_records_total 3
# HELP kubestream_kafka_tombstones_total Tombstones Kafka acknowledged.
# TYPE kubestream_kafka_tombstones_total counter
kubestream_kafka_tombstones_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kubestream_kafka_records_total", "kubestream_kafka_tombstones_total"); err != nil {
		t.Fatal(err)
	}
}
