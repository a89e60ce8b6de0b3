package kafka_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/pipeline"
)

// randomBytes is incompressible data, the same on every run.
func randomBytes(n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{7}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// binaryConfigMap is a config map holding n incompressible bytes: close to
// the apiserver's 1 MiB limit, it is bigger than a Kafka record may be.
func binaryConfigMap(name, rv string, n int) *corev1.ConfigMap {
	cm := configMap("big", name, "uid-"+name, rv, nil)
	cm.BinaryData = map[string][]byte{"blob": randomBytes(n)}
	return cm
}

func smallPods(n int) []*kubestreamv1.Event {
	var out []*kubestreamv1.Event
	for i := range n {
		out = append(out, created(kinds.Pods, pod("small", fmt.Sprintf("p-%d", i), fmt.Sprintf("u-%d", i), "1")))
	}
	return out
}

func TestOversizedCompressibleEventIsPublishedWhole(t *testing.T) {
	for _, codec := range []string{"snappy", "none"} {
		t.Run(codec, func(t *testing.T) {
			ctx := testContext(t)
			c := newCluster(t)
			o := testOptions(c)
			o.Compression = codec
			s := openSink(t, ctx, o)
			// 1.2 MB of text: over --kafka-batch-bytes, but compresses well.
			text := strings.Repeat("log.level=debug\nfeature.flags=a,b,c\n", 1200000/37)
			cm := configMap("big", "text", "uid-text", "1", map[string]string{"app.properties": text})
			events := append(smallPods(10), created(kinds.ConfigMaps, cm))
			publish(t, ctx, s, events...)

			recs := readTopic(t, ctx, o.Brokers, "kubestream.configmaps")
			if len(recs) != 1 {
				t.Fatalf("%d config map records, want 1", len(recs))
			}
			ev := decode(t, recs[0])
			if ev.GetChange().GetTruncated() || len(ev.GetChange().GetObject()) < len(text) {
				t.Errorf("compressible event was truncated (object %d bytes)", len(ev.GetChange().GetObject()))
			}
			if n := len(readTopic(t, ctx, o.Brokers, "kubestream.pods")); n != 10 {
				t.Errorf("%d pod records next to the large one, want 10", n)
			}
			if st := s.Stats(); st.Compressed != 1 || st.Trimmed != 0 {
				t.Errorf("stats %+v, want Compressed 1", st)
			}
		})
	}
}

func TestIncompressibleNearOneMebibyteIsTrimmed(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t)
	o := testOptions(c)
	s := openSink(t, ctx, o)
	prev := binaryConfigMap("blob", "1", 1000000)
	next := binaryConfigMap("blob", "2", 1000000)
	next.BinaryData["blob"][0] ^= 0xff
	up := updated(kinds.ConfigMaps, prev, next)
	events := append(smallPods(10), up)
	publish(t, ctx, s, events...)

	recs := readTopic(t, ctx, o.Brokers, "kubestream.configmaps")
	if len(recs) != 1 {
		t.Fatalf("%d config map records, want 1", len(recs))
	}
	ev := decode(t, recs[0])
	oc := ev.GetChange()
	if !oc.GetTruncated() || len(oc.GetPrevious()) != 0 {
		t.Errorf("event not trimmed: truncated=%v previous=%d bytes object=%d bytes", oc.GetTruncated(), len(oc.GetPrevious()), len(oc.GetObject()))
	}
	if tr, _ := header(recs[0], event.HeaderTruncated); tr != "true" {
		t.Errorf("ks-truncated header %q, want true", tr)
	}
	if ev.GetId() != up.GetId() || oc.GetConfigMap().GetDataHash() == "" || ev.GetObject().GetName() != "blob" {
		t.Errorf("trimmed event lost its identity or summary: %v", ev.GetObject())
	}
	if n := len(readTopic(t, ctx, o.Brokers, "kubestream.pods")); n != 10 {
		t.Errorf("%d pod records next to the large one, want 10", n)
	}
	if st := s.Stats(); st.Trimmed != 1 {
		t.Errorf("stats %+v, want Trimmed 1", st)
	}
}

// TestBrokerLimitBelowBatchBytes: the broker refuses whole batches; the sink
// finds which events are innocent and which one is too large.
func TestBrokerLimitBelowBatchBytes(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": "20000"}))
	o := testOptions(c)
	o.Compression = "none"
	s := openSink(t, ctx, o)
	big := binaryConfigMap("blob", "1", 50000)
	events := append(smallPods(30), created(kinds.ConfigMaps, big))
	publish(t, ctx, s, events...)
	if n := len(readTopic(t, ctx, o.Brokers, "kubestream.pods")); n != 30 {
		t.Errorf("%d pod records, want 30", n)
	}
	recs := readTopic(t, ctx, o.Brokers, "kubestream.configmaps")
	if len(recs) != 1 || !decode(t, recs[0]).GetChange().GetTruncated() {
		t.Errorf("config map over the broker's limit: %d records, want 1 truncated", len(recs))
	}
}

func TestEventThatNeverFitsIsPermanent(t *testing.T) {
	ctx := testContext(t)
	c := newCluster(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": "4000"}))
	o := testOptions(c)
	o.BatchBytes = 3500
	s := openSink(t, ctx, o)
	// Labels are identity (ObjectRef.labels): trimming cannot drop them.
	p := pod("a", "labelled", "u-l", "1")
	for i := range 400 {
		p.Labels[fmt.Sprintf("label-%03d", i)] = fmt.Sprintf("value-%03d", i)
	}
	small := created(kinds.ConfigMaps, configMap("a", "ok", "u-ok", "1", nil))
	errs := s.Publish(ctx, []*kubestreamv1.Event{created(kinds.Pods, p), small})
	if errs == nil || errs[0] == nil {
		t.Fatalf("event larger than any limit was acknowledged")
	}
	if !errors.Is(errs[0], pipeline.ErrPermanent) || !errors.Is(errs[0], kafkago.MessageSizeTooLarge) {
		t.Errorf("error %v: want permanent and MessageSizeTooLarge", errs[0])
	}
	if errs[1] != nil {
		t.Errorf("the small event next to it failed: %v", errs[1])
	}
	if st := s.Stats(); st.TooLarge != 1 {
		t.Errorf("stats %+v, want TooLarge 1", st)
	}
}
