// Command floorwatch is the floor the load harness measures kubestream
// against: a bare client-go watch of pods (protobuf, no informer cache, no
// broker) that writes one JSON line per event, shaped like kubestream's
// stdout sink so the same reader matches it with the writes.
//
// It serves the Go runtime's metrics and pprof like kubestream, and logs
// the address the same way, so the harness measures both alike.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster to watch")
	namespace := flag.String("namespace", "", "namespace of the pods to watch (empty: all)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *kubeconfig, *namespace); err != nil {
		klog.ErrorS(err, "Floor watch failed")
		os.Exit(1)
	}
	klog.InfoS("Stopped")
}

func run(ctx context.Context, kubeconfig, namespace string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("make a client: %w", err)
	}
	if err := serve(); err != nil {
		return err
	}

	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	defer out.Flush()
	enc := json.NewEncoder(out)
	// A list gives the resourceVersion to watch from, like an informer's.
	pods := client.CoreV1().Pods(namespace)
	list, err := pods.List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	rv := list.ResourceVersion
	if err := enc.Encode(line{Operation: "OPERATION_REPLAY_END"}); err != nil {
		return err
	}
	if err := out.Flush(); err != nil {
		return err
	}
	for ctx.Err() == nil {
		w, err := pods.Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch pods from resourceVersion %s: %w", rv, err)
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				// The floor does not relist: events would be missed, and
				// the harness must fail rather than wait for them.
				w.Stop()
				return fmt.Errorf("watch pods from resourceVersion %s: %v", rv, ev.Object)
			}
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			rv = pod.ResourceVersion
			op := map[watch.EventType]string{watch.Added: "OPERATION_CREATED", watch.Modified: "OPERATION_UPDATED", watch.Deleted: "OPERATION_DELETED"}[ev.Type]
			if op == "" {
				continue // bookmarks
			}
			l := line{Operation: op}
			l.Object.Name, l.Object.ResourceVersion = pod.Name, pod.ResourceVersion
			if err := enc.Encode(&l); err != nil {
				w.Stop()
				return fmt.Errorf("write an event: %w", err)
			}
			// Flush when no other event is waiting, as kubestream's stdout
			// sink writes once per batch.
			if len(w.ResultChan()) == 0 {
				if err := out.Flush(); err != nil {
					w.Stop()
					return fmt.Errorf("write an event: %w", err)
				}
			}
		}
		_ = out.Flush()
	}
	return nil
}

// line is the part of kubestream's JSON event the harness reads.
type line struct {
	Operation string `json:"operation"`
	Object    struct {
		Name            string `json:"name,omitempty"`
		ResourceVersion string `json:"resourceVersion,omitempty"`
	} `json:"object"`
}

// serve exposes /metrics (the Go runtime's) and /debug/pprof on a loopback
// port and logs its address as kubestream does.
func serve() error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for metrics: %w", err)
	}
	go func() { _ = http.Serve(l, mux) }()
	klog.InfoS("Serving metrics and health", "address", l.Addr().String())
	return nil
}
