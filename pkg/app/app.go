// Package app is kubestream's composition root: it connects to the cluster,
// builds the source, pipeline, sink and operational server, runs them under
// one context and shuts them down in order.
package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/pipeline"
	"github.com/kubestream/kubestream/pkg/server"
	"github.com/kubestream/kubestream/pkg/source"
)

// Sink is a pipeline sink that can be flushed and closed.
type Sink interface {
	pipeline.Sink
	// Close flushes what is in flight within ctx's deadline and releases
	// connections.
	Close(ctx context.Context) error
}

// Config is everything Run needs.
type Config struct {
	Kubeconfig  string
	Context     string
	ClusterName string
	Instance    string
	Kinds       []kinds.Kind
	Namespace   string
	Selector    string
	Resync      time.Duration
	ContentType kubestreamv1.ContentType
	Pipeline    pipeline.Options
	// ListenAddress serves /metrics, /healthz, /readyz; empty disables.
	ListenAddress string
	// ShutdownTimeout bounds draining acknowledged-pending events on exit.
	ShutdownTimeout time.Duration
	// UnreadyAfter turns /readyz unready when a change has been failing to
	// publish for this long. Default 1m.
	UnreadyAfter time.Duration
	// Derivers add derived events (image storage).
	Derivers []source.Deriver
	// DerivedStreams names the streams the derivers publish to
	// (kinds.ImageStorage), for the sink's start-up check.
	DerivedStreams []string
	// Registry receives metrics; default a new registry.
	Registry *prometheus.Registry
}

// badInput marks an error caused by the user's input (exit code 2).
type badInput struct{ err error }

func (b badInput) Error() string { return b.err.Error() }
func (b badInput) Unwrap() error { return b.err }

// BadInput marks err as caused by the user's input: wrong flags, an
// unreadable kubeconfig, a missing permission. Its message is err's.
func BadInput(err error) error { return badInput{err} }

// IsBadInput reports whether err was caused by the user's input.
func IsBadInput(err error) bool {
	var b badInput
	return errors.As(err, &b)
}

// RestConfig resolves the cluster the way kubectl does: --kubeconfig, else
// $KUBECONFIG, else ~/.kube/config, else the in-cluster service account.
func RestConfig(kubeconfig, context string) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		if _, err := os.Stat(kubeconfig); err != nil {
			return nil, "", BadInput(fmt.Errorf("kubeconfig %s cannot be read: %w", kubeconfig, err))
		}
		rules.ExplicitPath = kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: context}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, "", BadInput(errors.New("no cluster configured: pass --kubeconfig, set KUBECONFIG, create ~/.kube/config, or run in a pod with a service account"))
		}
		return nil, "", BadInput(fmt.Errorf("kubeconfig is not usable (check --kubeconfig and --context): %w", err))
	}
	name := context
	if raw, err := cc.RawConfig(); err == nil && name == "" {
		name = raw.CurrentContext
	}
	if name == "" {
		name = "in-cluster"
	}
	// Protobuf on the wire: decoding JSON costs about ten times the CPU.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.UserAgent = "kubestream"
	return cfg, name, nil
}

// Preflight checks that the apiserver answers and that every kind may be
// listed, so a wrong kubeconfig or missing RBAC fails at once with a clear
// message instead of informers retrying forever.
func Preflight(ctx context.Context, client kubernetes.Interface, host string, ks []kinds.Kind, namespace string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := client.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("cannot reach the Kubernetes API at %s: %w (check --kubeconfig and --context, and that the cluster is up)", host, err)
	}
	for _, k := range ks {
		var err error
		opts := metav1.ListOptions{Limit: 1}
		switch k.Resource {
		case kinds.Pods.Resource:
			_, err = client.CoreV1().Pods(namespace).List(ctx, opts)
		case kinds.Nodes.Resource:
			_, err = client.CoreV1().Nodes().List(ctx, opts)
		case kinds.ConfigMaps.Resource:
			_, err = client.CoreV1().ConfigMaps(namespace).List(ctx, opts)
		case kinds.Deployments.Resource:
			_, err = client.AppsV1().Deployments(namespace).List(ctx, opts)
		}
		if apierrors.IsForbidden(err) {
			return BadInput(fmt.Errorf("not allowed to list %s: grant get, list and watch on %s (deploy/ has the ClusterRole), or drop it from --kinds: %w", k.Resource, k.Resource, err))
		}
		if err != nil {
			return fmt.Errorf("list %s at %s: %w", k.Resource, host, err)
		}
		// Without watch, informers fall back to relisting and log
		// "forbidden" forever: refuse to start instead.
		if allowed, err := canWatch(ctx, client, k, namespace); err == nil && !allowed {
			return BadInput(fmt.Errorf("not allowed to watch %s: grant get, list and watch on %s (deploy/ has the ClusterRole), or drop it from --kinds", k.Resource, k.Resource))
		}
	}
	return nil
}

// canWatch asks the apiserver whether this identity may watch a kind.
func canWatch(ctx context.Context, client kubernetes.Interface, k kinds.Kind, namespace string) (bool, error) {
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: "watch", Group: k.GVK.Group, Resource: k.Resource, Namespace: namespace,
		},
	}}
	if !k.Namespaced {
		review.Spec.ResourceAttributes.Namespace = ""
	}
	res, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return res.Status.Allowed, nil
}

// SinkOpener validates a sink's settings and connects it. streams names
// what will be published: the watched kinds' resource names, and
// kinds.ImageStorage when a deriver produces image-storage events. A sink
// checks at open that it can take every one of them (Kafka: the topics
// exist or can be created), so a gap fails start-up, not the stream.
type SinkOpener func(ctx context.Context, streams []string) (Sink, error)

// Run streams until ctx ends, then drains and closes the sink. The sink is
// opened once the cluster answered, so a wrong kubeconfig fails before any
// broker connection (or embedded broker) exists.
func Run(ctx context.Context, cfg Config, openSink SinkOpener) error {
	logger := klog.FromContext(ctx)
	restCfg, contextName, err := RestConfig(cfg.Kubeconfig, cfg.Context)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return BadInput(fmt.Errorf("build Kubernetes client: %w", err))
	}
	if err := Preflight(ctx, client, restCfg.Host, cfg.Kinds, cfg.Namespace); err != nil {
		return err
	}
	logger.Info("Connected to cluster", "context", contextName, "server", restCfg.Host, "cluster", cfg.ClusterName,
		"kinds", kinds.Names(cfg.Kinds), "namespace", orAll(cfg.Namespace), "selector", cfg.Selector, "resync", cfg.Resync.String())

	sink, err := openSink(ctx, append(kinds.Names(cfg.Kinds), cfg.DerivedStreams...))
	if err != nil {
		return err
	}
	// Every return from here on closes the sink.
	closeSink := func(ctx context.Context) {
		if err := sink.Close(ctx); err != nil {
			logger.Error(err, "Closing sink")
		}
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "kubestream", Name: "delivery_latency_seconds",
		Help:    "Time from a change reaching kubestream to the broker acknowledging its event.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
	reg.MustRegister(latency)
	// Sinks with counters of their own (oversized events, tombstones) export
	// them by being collectors.
	if c, ok := sink.(prometheus.Collector); ok {
		reg.MustRegister(c)
	}
	popts := cfg.Pipeline
	userAck := popts.OnAcknowledged
	var initialDelivered atomic.Bool
	popts.OnAcknowledged = func(ev *kubestreamv1.Event, enqueued time.Time) {
		latency.Observe(time.Since(enqueued).Seconds())
		if ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END && ev.GetReplay().GetReason() == kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL {
			initialDelivered.Store(true)
		}
		if userAck != nil {
			userAck(ev, enqueued)
		}
	}
	translator := &event.Translator{Cluster: cfg.ClusterName, Instance: cfg.Instance, ContentType: cfg.ContentType}
	pipe := pipeline.New(sink, translator, popts)
	src, err := source.New(source.Options{
		Client: client, RestConfig: restCfg, Kinds: cfg.Kinds, Namespace: cfg.Namespace, Selector: cfg.Selector,
		Resync: cfg.Resync, Queue: pipe, Derivers: cfg.Derivers,
	})
	if err != nil {
		closeSink(ctx)
		return BadInput(err)
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "kubestream", Name: "replay_rounds_skipped_total",
		Help: "Replay rounds not started because the previous round was not delivered yet (the broker is behind or down)."},
		func() float64 { return float64(src.SkippedRounds()) }))
	unreadyAfter := cfg.UnreadyAfter
	if unreadyAfter <= 0 {
		unreadyAfter = time.Minute
	}
	ready := func() error {
		if !initialDelivered.Load() {
			return errors.New("the initial round is not acknowledged by the broker yet")
		}
		if st := pipe.Stats(); !st.FailingSince.IsZero() {
			if d := time.Since(st.FailingSince); d > unreadyAfter {
				return fmt.Errorf("publishing has been failing for %s (%d changes failing), last error: %s", d.Round(time.Second), st.Failing, st.LastError)
			}
		}
		return nil
	}
	var srv *server.Server
	if cfg.ListenAddress != "" {
		srv, err = server.Listen(server.Options{Address: cfg.ListenAddress, Stats: pipe.Stats, Ready: ready, Registry: reg})
		if err != nil {
			closeSink(ctx)
			return BadInput(err)
		}
	}

	// Workers outlive the source: they drain after the informers stopped.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	workersDone := make(chan struct{})
	go func() {
		pipe.Run(workCtx)
		close(workersDone)
	}()

	g, gctx := errgroup.WithContext(ctx)
	if srv != nil {
		g.Go(func() error { return srv.Serve(gctx) })
	}
	g.Go(func() error {
		return src.Run(gctx, func(stats []source.SyncStat) {
			for _, st := range stats {
				logger.Info("Initial list synced", "kind", st.Kind, "objects", st.Objects, "took", st.Duration.Round(time.Millisecond).String())
			}
		})
	})
	runErr := g.Wait()

	// Ordered shutdown: informers stopped (Run returned); drain the queue
	// into the sink, stop the workers, close the sink.
	timeout := cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	left := pipe.Shutdown(drainCtx)
	stopWork()
	<-workersDone
	st := pipe.Stats()
	logger.Info("Stopped", "published", st.Published, "retried", st.Retried, "coalesced", st.Coalesced, "lost", st.Lost, "leftUnpublished", left)
	closeSink(drainCtx)
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	if left > 0 {
		return fmt.Errorf("shutdown: %d changes not acknowledged within %s", left, timeout)
	}
	return nil
}

func orAll(ns string) string {
	if strings.TrimSpace(ns) == "" {
		return "(all)"
	}
	return ns
}
