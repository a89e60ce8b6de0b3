package kafka_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/sink/kafka"
)

// realisticPod is a pod as a cluster holds it: labels, annotations, two
// containers with resources and env, statuses and conditions (managedFields
// stripped, as the source does). Its created event is about 3 KB.
func realisticPod(i int) *corev1.Pod {
	p := pod("payments", fmt.Sprintf("checkout-7d9f8b6c5-%05d", i), fmt.Sprintf("5f1c2d3e-0000-4000-8000-%012d", i), fmt.Sprint(1000000+i))
	p.Labels = map[string]string{"app.kubernetes.io/name": "checkout", "app.kubernetes.io/part-of": "shop", "pod-template-hash": "7d9f8b6c5", "team": "payments"}
	p.Annotations = map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9090", "kubectl.kubernetes.io/default-container": "main"}
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "checkout-7d9f8b6c5", UID: "1a2b3c4d-0000-4000-8000-000000000001"}}
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")},
	}
	for c := range p.Spec.Containers {
		p.Spec.Containers[c].Resources = res
		p.Spec.Containers[c].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "metrics", ContainerPort: 9090}}
		p.Spec.Containers[c].VolumeMounts = []corev1.VolumeMount{{Name: "kube-api-access-abcde", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}}
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: p.Spec.Containers[c].Name, Ready: true, RestartCount: 1, Image: p.Spec.Containers[c].Image,
			ImageID:     "registry.example.com/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			ContainerID: "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Unix(1700000000, 0)}},
		})
	}
	p.Spec.Volumes = []corev1.Volume{{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}}}
	p.Spec.ServiceAccountName = "checkout"
	p.Spec.Tolerations = []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: "Exists", Effect: "NoExecute"}}
	p.Status.HostIP = "10.0.1.17"
	p.Status.StartTime = &metav1.Time{Time: time.Unix(1700000000, 0)}
	for _, ct := range []corev1.PodConditionType{corev1.PodInitialized, corev1.ContainersReady} {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: ct, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Unix(1700000000, 0)})
	}
	return p
}

func benchEvents(n int) []*kubestreamv1.Event {
	out := make([]*kubestreamv1.Event, n)
	for i := range out {
		out[i] = created(kinds.Pods, realisticPod(i))
	}
	return out
}

func benchSink(b *testing.B) (*kafka.Sink, context.Context) {
	c := newCluster(b, kfake.BlackholeProduce(), kfake.SeedTopics(6, "kubestream.pods"))
	o := kafka.NewOptions()
	o.Brokers = c.ListenAddrs()
	ctx := klog.NewContext(context.Background(), klog.Background().V(1))
	s, err := kafka.Open(ctx, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(context.Background()) })
	return s, ctx
}

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	q := func(f float64) float64 {
		return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// BenchmarkKafkaSink measures the sink against kfake on loopback with the
// default settings (acks=all, snappy, 2ms batch timeout, 6 partitions) and
// ~3 KB pod events.
//
//   - throughput: 4 concurrent publishers of 256-event batches, as the
//     pipeline's workers; events/s and the Publish-to-ack latency of each
//     event.
//   - paced-1k: one event per millisecond, each its own Publish; the
//     Publish-to-ack latency at a steady 1k events/s.
//   - one-by-one: one event per Publish, one after the other, as the
//     pipeline publishes at a few hundred events per second: the cost of
//     a request carrying one event (allocations include kfake's, the same
//     on both sides of a comparison).
func BenchmarkKafkaSink(b *testing.B) {
	events := benchEvents(4096)
	b.Logf("pod event: %d bytes encoded", proto.Size(events[0]))

	b.Run("throughput", func(b *testing.B) {
		s, ctx := benchSink(b)
		const workers, batch = 4, 256
		var mu sync.Mutex
		var lat []time.Duration
		next := make(chan int, workers)
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				for from := range next {
					n := min(batch, b.N-from)
					evs := make([]*kubestreamv1.Event, n)
					for i := range evs {
						evs[i] = events[(from+i)%len(events)]
					}
					t0 := time.Now()
					if errs := s.Publish(ctx, evs); errs != nil {
						b.Errorf("publish: %v", errs)
						return
					}
					d := time.Since(t0)
					for range n {
						mine = append(mine, d)
					}
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		for from := 0; from < b.N; from += batch {
			next <- from
		}
		close(next)
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
		reportLatency(b, lat)
	})

	b.Run("paced-1k", func(b *testing.B) {
		s, ctx := benchSink(b)
		lat := make([]time.Duration, b.N)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var wg sync.WaitGroup
		b.ResetTimer()
		for i := range b.N {
			<-tick.C
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				if errs := s.Publish(ctx, []*kubestreamv1.Event{events[i%len(events)]}); errs != nil {
					b.Errorf("publish: %v", errs)
				}
				lat[i] = time.Since(t0)
			}()
		}
		wg.Wait()
		b.StopTimer()
		reportLatency(b, lat)
	})

	b.Run("one-by-one", func(b *testing.B) {
		s, ctx := benchSink(b)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if errs := s.Publish(ctx, []*kubestreamv1.Event{events[i%len(events)]}); errs != nil {
				b.Fatalf("publish: %v", errs)
			}
		}
	})
}
