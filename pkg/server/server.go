// Package server serves kubestream's operational endpoints: Prometheus
// metrics, liveness, readiness and pprof.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/pipeline"
)

// Server is the HTTP server of the operational endpoints.
type Server struct {
	srv      *http.Server
	listener net.Listener
}

// Options configure the server.
type Options struct {
	// Address to listen on, e.g. ":8080" or "127.0.0.1:0".
	Address string
	// Stats returns the pipeline counters for /metrics.
	Stats func() pipeline.Stats
	// Ready reports readiness for /readyz: nil when ready, else why not
	// (served as the response body, one line).
	Ready func() error
	// Registry receives the metrics; it is also served. Default: a new one.
	Registry *prometheus.Registry
}

// Listen binds the address so a bad one fails at start-up, not later.
func Listen(opts Options) (*Server, error) {
	l, err := net.Listen("tcp", opts.Address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s for metrics and health: %w (choose another --listen-address, or \"\" to disable)", opts.Address, err)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerPipeline(reg, opts.Stats)

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if opts.Ready != nil {
			if err := opts.Ready(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, listener: l}, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Serve runs until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(shutdownCtx)
	}()
	klog.FromContext(ctx).Info("Serving metrics and health", "address", s.Addr())
	if err := s.srv.Serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics and health: %w", err)
	}
	return nil
}

func registerPipeline(reg *prometheus.Registry, stats func() pipeline.Stats) {
	if stats == nil {
		return
	}
	counter := func(name, help string, f func(pipeline.Stats) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "kubestream", Name: name, Help: help},
			func() float64 { return float64(f(stats())) }))
	}
	gauge := func(name, help string, f func(pipeline.Stats) int) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kubestream", Name: name, Help: help},
			func() float64 { return float64(f(stats())) }))
	}
	counter("changes_enqueued_total", "Changes accepted from the informers.", func(s pipeline.Stats) uint64 { return s.Enqueued })
	counter("events_published_total", "Events acknowledged by the sink.", func(s pipeline.Stats) uint64 { return s.Published })
	counter("publish_retries_total", "Publish attempts that failed and were retried.", func(s pipeline.Stats) uint64 { return s.Retried })
	counter("changes_coalesced_total", "Changes folded into a pending change of the same object because the sink was behind.", func(s pipeline.Stats) uint64 { return s.Coalesced })
	counter("changes_cancelled_total", "Creates that vanished with their delete before anything was published (no consumer saw the uid).", func(s pipeline.Stats) uint64 { return s.Cancelled })
	counter("events_lost_total", "Events that never reached the broker in any form (reported in the log). Alert when it grows.", func(s pipeline.Stats) uint64 { return s.Lost })
	counter("deletes_identity_only_total", "Deletes the sink refused in full, published as their identity alone.", func(s pipeline.Stats) uint64 { return s.DeletesIdentityOnly })
	counter("deletes_lost_total", "Deletes that never reached the broker, not even as their identity (also in events_lost_total).", func(s pipeline.Stats) uint64 { return s.DeletesLost })
	counter("replay_markers_forced_total", "Replay markers published while keys they waited for kept failing; the keys are named in the marker.", func(s pipeline.Stats) uint64 { return s.MarkersForced })
	gauge("pending_changes", "Changes queued or in flight.", func(s pipeline.Stats) int { return s.Pending })
	gauge("pending_objects", "Objects with queued or in-flight changes.", func(s pipeline.Stats) int { return s.Keys })
	gauge("pending_markers", "Replay markers not yet acknowledged.", func(s pipeline.Stats) int { return s.Markers })
	gauge("failing_changes", "Queued changes whose last publish attempt failed.", func(s pipeline.Stats) int { return s.Failing })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kubestream", Name: "failing_since_seconds",
		Help: "Unix time the oldest still-failing change first failed; 0 when nothing is failing."},
		func() float64 {
			if t := stats().FailingSince; !t.IsZero() {
				return float64(t.UnixNano()) / 1e9
			}
			return 0
		}))
}
