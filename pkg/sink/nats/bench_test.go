package nats_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kubestream/kubestream/pkg/natsembed"
	natssink "github.com/kubestream/kubestream/pkg/sink/nats"
	"github.com/kubestream/kubestream/pkg/sink/nats/natstest"
)

// benchServers are a separate nats-server process and the embedded server,
// both on loopback.
func benchServers(b *testing.B) []peer {
	proc := natstest.StartProcess(b, natstest.ProcessOptions{})
	emb, err := natsembed.Start(natsembed.Options{Dir: b.TempDir(), Port: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(emb.Shutdown)
	return []peer{{"process", proc.URL()}, {"embedded", emb.URL()}}
}

// BenchmarkPublish measures throughput the way the pipeline drives the sink:
// 4 workers, batches of 256 Pod update events (about 6 KB each: previous and
// new state, changed paths, summary), each batch waiting for its acks.
// Reported: events/s, and the p50/p99 time from a batch's publish to its
// last ack.
func BenchmarkPublish(b *testing.B) {
	for _, srv := range benchServers(b) {
		for _, mode := range []string{"core", "jetstream-file"} {
			b.Run(srv.name+"/"+mode, func(b *testing.B) {
				benchPublish(b, srv.url, mode, 4, 256)
			})
		}
	}
}

// BenchmarkPublishLatency publishes one event at a time from one worker:
// p50/p99 are the unloaded publish-to-ack latency of a single event.
func BenchmarkPublishLatency(b *testing.B) {
	for _, srv := range benchServers(b) {
		for _, mode := range []string{"core", "jetstream-file"} {
			b.Run(srv.name+"/"+mode, func(b *testing.B) {
				benchPublish(b, srv.url, mode, 1, 1)
			})
		}
	}
}

func benchPublish(b *testing.B, url, mode string, workers, batch int) {
	ctx := context.Background()
	opts := natssink.Options{}
	if mode != "core" {
		name := fmt.Sprintf("BENCH%d", time.Now().UnixNano())
		opts.Stream = natssink.StreamOptions{Name: name, Create: true, Storage: "file", MaxAge: time.Hour, DuplicateWindow: 2 * time.Minute}
		opts.SubjectPrefix = "b" + name
	}
	sink, err := natssink.Open(ctx, natssink.ConnOptions{URLs: []string{url}}, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close(ctx)
	template := podEvents(b, batch*workers, 2)
	b.SetBytes(int64(proto.Size(template[0])))
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		events := template[w*batch : (w+1)*batch]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for {
				n := next.Add(int64(batch))
				if n-int64(batch) >= int64(b.N) {
					break
				}
				for i, ev := range events {
					// Fresh ids: JetStream would drop repeats as duplicates.
					ev.Id = fmt.Sprintf("bench-%d-%d", n, i)
				}
				t0 := time.Now()
				if errs := sink.Publish(ctx, events); errs != nil {
					b.Error(slices.DeleteFunc(errs, func(e error) bool { return e == nil })[0])
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	published := len(lat) * batch
	b.ReportMetric(float64(published)/elapsed.Seconds(), "events/s")
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
	}
}
