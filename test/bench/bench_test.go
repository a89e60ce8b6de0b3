package bench

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/pipeline"
	"github.com/kubestream/kubestream/pkg/sink/stdout"
	"github.com/kubestream/kubestream/pkg/source"
)

var translator = &event.Translator{Cluster: "bench", Instance: "bench-0", ContentType: kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF}

// podChanges returns a pod's created, updated (an annotation and a label
// changed, as the load harness does) and deleted changes.
func podChanges(name string) (created, updated, deleted *change.Change) {
	now := time.Unix(1_750_000_000, 0)
	v1 := ServerPod("shop", name, "uid-"+name, "1001")
	v2 := v1.DeepCopy()
	v2.ResourceVersion = "1002"
	v2.Annotations["bench.kubestream.io/step"] = "1"
	v2.Labels["version"] = "v2"
	// The informer cache holds pods in compact form; so do the changes.
	c1, c2 := compact(v1), compact(v2)
	created = &change.Change{Kind: kinds.Pods, Op: change.Created, Object: c1, ObservedAt: now}
	updated = &change.Change{Kind: kinds.Pods, Op: change.Updated, Object: c2, Previous: c1, ObservedAt: now}
	deleted = &change.Change{Kind: kinds.Pods, Op: change.Deleted, Previous: c2, ObservedAt: now}
	return created, updated, deleted
}

func compact(o change.Object) change.Object {
	c, err := change.Compacted(o)
	if err != nil {
		panic(err)
	}
	return c.(change.Object)
}

// BenchmarkTranslatePod is the per-event work between the queue and a binary
// sink: translation (encoding object and previous state, changed paths,
// summary, id) and the protobuf encoding of the event.
func BenchmarkTranslatePod(b *testing.B) {
	created, updated, deleted := podChanges("checkout-7d9f8c6b5d-x2x9k")
	for _, c := range []*change.Change{created, updated, deleted} {
		b.Run(c.Op.String(), func(b *testing.B) {
			b.ReportAllocs()
			var size int
			for b.Loop() {
				ev, err := translator.Translate(c)
				if err != nil {
					b.Fatal(err)
				}
				out, err := proto.Marshal(ev)
				if err != nil {
					b.Fatal(err)
				}
				size = len(out)
			}
			b.ReportMetric(float64(size), "wire-bytes")
		})
	}
}

// BenchmarkChangedPaths isolates the reflective diff of an update, the most
// expensive step of translating one.
func BenchmarkChangedPaths(b *testing.B) {
	_, updated, _ := podChanges("p")
	prev, _ := change.Full(updated.Previous)
	next, _ := change.Full(updated.Object)
	b.ReportAllocs()
	for b.Loop() {
		if len(event.ChangedPaths(prev, next)) != 2 {
			b.Fatal("want two changed paths")
		}
	}
}

// BenchmarkStdoutEncode is the stdout sink's per-event cost: protojson of an
// update event (object and previous state as base64).
func BenchmarkStdoutEncode(b *testing.B) {
	_, updated, _ := podChanges("p")
	ev, err := translator.Translate(updated)
	if err != nil {
		b.Fatal(err)
	}
	var out countingWriter
	sink := stdout.New(&out)
	batch := []*kubestreamv1.Event{ev}
	b.ReportAllocs()
	for b.Loop() {
		if errs := sink.Publish(context.Background(), batch); errs != nil {
			b.Fatal(errs)
		}
	}
	b.ReportMetric(float64(out.n)/float64(b.N), "json-bytes")
}

// countingWriter discards what it is given and counts the bytes.
type countingWriter struct{ n int }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// nopSink acknowledges everything at once.
type nopSink struct{}

func (nopSink) Publish(context.Context, []*kubestreamv1.Event) []error { return nil }

// BenchmarkPipeline pushes pod changes through the keyed queue, translation
// and a sink that acknowledges at once, and reports the throughput. Changes
// come in waves of 2000 objects (created, then updated, then deleted), each
// wave drained before the next, so nothing coalesces and every change becomes
// an event.
func BenchmarkPipeline(b *testing.B) {
	const objects = 2000
	waves := make([][]*change.Change, 3)
	for i := 0; i < objects; i++ {
		c, u, d := podChanges("pod-" + strconv.Itoa(i))
		waves[0] = append(waves[0], c)
		waves[1] = append(waves[1], u)
		waves[2] = append(waves[2], d)
	}
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.ReportAllocs()
			p := pipeline.New(nopSink{}, translator, pipeline.Options{Workers: workers})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { p.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.Enqueue(waves[(i/objects)%3][i%objects])
				if (i+1)%objects == 0 {
					if err := p.WaitIdle(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := p.WaitIdle(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			st := p.Stats()
			if st.Published != uint64(b.N) {
				b.Fatalf("published %d events of %d changes (coalesced %d)", st.Published, b.N, st.Coalesced)
			}
			b.ReportMetric(float64(st.Published)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkCachedPodHeap measures the Go heap one cached pod holds, the
// way the informer keeps it: decoded from the apiserver's protobuf, managed
// fields stripped, in an indexer with the namespace index ("decoded"). For
// comparison, "protobuf" keeps only the identity and the object's protobuf
// encoding per pod: the floor of a cache that decodes objects on demand.
// The heap-B/pod metric is the result; ns/op is the cost of decoding and
// storing one pod.
func BenchmarkCachedPodHeap(b *testing.B) {
	codec := protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)
	tmpl := ServerPod("shop", "template", "00000000-7b1f-4d2e-9c8a-1f2e3d4c5b6a", "100000")
	tmpl.APIVersion, tmpl.Kind = "v1", "Pod"
	var wire bytesBuffer
	if err := codec.Encode(tmpl, &wire); err != nil {
		b.Fatal(err)
	}
	decode := func(i int) *corev1.Pod {
		obj, _, err := codec.Decode(wire.b, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		pod := obj.(*corev1.Pod)
		pod.Name = "checkout-7d9f8c6b5d-" + strconv.Itoa(i)
		pod.UID = types.UID(fmt.Sprintf("%08d-7b1f-4d2e-9c8a-1f2e3d4c5b6a", i))
		pod.ResourceVersion = strconv.Itoa(100000 + i)
		source.StripManagedFields(pod)
		return pod
	}
	measure := func(b *testing.B, add func(i int, store cache.Indexer)) {
		store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		b.ReportAllocs()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := 0; b.Loop(); i++ {
			add(i, store)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(store.ListKeys())), "heap-B/pod")
		runtime.KeepAlive(store)
	}
	b.Run("decoded", func(b *testing.B) {
		measure(b, func(i int, store cache.Indexer) {
			if err := store.Add(decode(i)); err != nil {
				b.Fatal(err)
			}
		})
	})
	// What kubestream's cache holds: change.Compacted, identity and protobuf.
	b.Run("compact", func(b *testing.B) {
		measure(b, func(i int, store cache.Indexer) {
			c, err := change.Compacted(decode(i))
			if err != nil {
				b.Fatal(err)
			}
			if err := store.Add(c); err != nil {
				b.Fatal(err)
			}
		})
	})
}

type bytesBuffer struct{ b []byte }

func (w *bytesBuffer) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
