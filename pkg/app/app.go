// Package app is kubestream's composition root: it connects to the cluster,
// builds the source, pipeline, sink and operational server, runs them under
// one context and shuts them down in order.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/discover"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/leader"
	"github.com/kubestream/kubestream/pkg/noise"
	"github.com/kubestream/kubestream/pkg/pipeline"
	"github.com/kubestream/kubestream/pkg/redact"
	"github.com/kubestream/kubestream/pkg/resume"
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
	// Selection is resolved with the cluster's discovery (names, patterns);
	// when nil, Kinds are watched as they are (default: the typed kinds).
	Selection   *discover.Selection
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
	// Resume keeps acknowledged positions (StateFile, else the sink's own
	// store) and starts with the difference instead of a full snapshot.
	Resume bool
	// StateFile keeps positions in a file instead of the sink.
	StateFile string
	// StateFlushInterval is how often positions are written. Default 1s.
	StateFlushInterval time.Duration
	// SnapshotOnStart says when the first round is a full snapshot.
	SnapshotOnStart source.SnapshotMode
	// LeaderElection, when set, publishes only while this replica holds the
	// Lease. Client and Identity are filled in by Run when empty.
	LeaderElection *leader.Options
	// UnreadyAfter turns /readyz unready when a change has been failing to
	// publish for this long. Default 1m.
	UnreadyAfter time.Duration
	// Derivers add derived events (image storage).
	Derivers []source.Deriver
	// DerivedStreams names the streams the derivers publish to
	// (kinds.ImageStorage), for the sink's start-up check when nodes are
	// watched (image storage derives from them).
	DerivedStreams []string
	// Registry receives metrics; default a new registry.
	Registry *prometheus.Registry

	// Ignore, when set, keeps updates that change only ignored paths from
	// being published (--ignore-paths).
	Ignore *noise.Filter
	// ConfigMapData says how config map values appear (--configmap-data).
	ConfigMapData redact.Policy
	// HeartbeatInterval is the period of each kind's heartbeat; 0 disables.
	HeartbeatInterval time.Duration
	// CacheCompression keeps cached objects compressed (--cache-compression).
	CacheCompression bool
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
// listed and watched, so a wrong kubeconfig or missing RBAC fails at once
// with a clear message instead of informers retrying forever.
func Preflight(ctx context.Context, client kubernetes.Interface, meta metadata.Interface, host string, ks []kinds.Kind, namespace string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := client.Discovery().ServerVersion(); err != nil {
		// Exit code 2 as for other start-up checks: the configuration points
		// at a cluster that does not answer.
		return BadInput(fmt.Errorf("cannot reach the Kubernetes API at %s: %w (check --kubeconfig and --context, and that the cluster is up)", host, err))
	}
	for _, k := range ks {
		if err := checkKind(ctx, meta, client, host, k, namespace); err != nil {
			return err
		}
	}
	return nil
}

// SinkOpener validates a sink's settings and connects it. streams names
// what will be published: the watched kinds' resource names, and
// kinds.ImageStorage when a deriver produces image-storage events. A sink
// checks at open that it can take every one of them (Kafka: the topics
// exist or can be created), so a gap fails start-up, not the stream.
type SinkOpener func(ctx context.Context, streams []string) (Sink, error)

// StateStorer is a sink that can keep the acknowledged positions where its
// events go (a compacted Kafka topic, a JetStream key-value bucket).
type StateStorer interface {
	StateStore(ctx context.Context, cluster string) (resume.Store, error)
}

// ErrLostLeadership ends Run when this replica could not renew its lease:
// it stopped publishing at once, so two replicas never write together.
var ErrLostLeadership = errors.New("lost the leader lease: stopped publishing so that the new leader writes alone")

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
	meta, err := metadata.NewForConfig(restCfg)
	if err != nil {
		return BadInput(fmt.Errorf("build Kubernetes metadata client: %w", err))
	}
	if _, err := client.Discovery().ServerVersion(); err != nil {
		// Exit code 2 as for other start-up checks: the configuration points
		// at a cluster that does not answer.
		return BadInput(fmt.Errorf("cannot reach the Kubernetes API at %s: %w (check --kubeconfig and --context, and that the cluster is up)", restCfg.Host, err))
	}
	ks, _, err := resolveKinds(client, cfg)
	if err != nil {
		return err
	}
	if err := Preflight(ctx, client, meta, restCfg.Host, ks, cfg.Namespace); err != nil {
		return err
	}
	patterns := cfg.Selection != nil && cfg.Selection.HasPatterns()
	if patterns && len(ks) == 0 {
		logger.Info("No kind matches the --kinds patterns yet: watching for kinds to appear", "patterns", cfg.Selection.Patterns)
	}
	if patterns {
		if ok, err := canDo(ctx, client, "watch", discover.Definitions.Group, discover.Definitions.Resource, ""); err == nil && !ok {
			return BadInput(fmt.Errorf("--kinds patterns watch custom resource definitions to pick up new kinds: grant get, list and watch on customresourcedefinitions.apiextensions.k8s.io (kubestream rbac prints it), or name the kinds instead"))
		}
	}
	var elector *leader.Elector
	if le := cfg.LeaderElection; le != nil {
		if err := preflightLease(ctx, client, le.Namespace, le.Name); err != nil {
			return err
		}
		le.Client = client
		if le.Identity == "" {
			le.Identity = cfg.Instance + "_" + newIdentitySuffix()
		}
		if elector, err = leader.New(*le); err != nil {
			return BadInput(err)
		}
	}
	logger.Info("Connected to cluster", "context", contextName, "server", restCfg.Host, "cluster", cfg.ClusterName,
		"kinds", kinds.Names(ks), "namespace", orAll(cfg.Namespace), "selector", cfg.Selector, "resync", cfg.Resync.String())

	streams := kinds.Names(ks)
	if slices.ContainsFunc(ks, func(k kinds.Kind) bool { return k.Resource == kinds.Nodes.Resource }) {
		streams = append(streams, cfg.DerivedStreams...)
	}
	sink, err := openSink(ctx, streams)
	if err != nil {
		return err
	}
	// Every return from here on closes the sink.
	closeSink := func(ctx context.Context) {
		if err := sink.Close(ctx); err != nil {
			logger.Error(err, "Closing sink")
		}
	}
	store, err := openStateStore(ctx, cfg, sink)
	if err != nil {
		closeSink(ctx)
		return err
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
	metrics := newStreamMetrics(reg)
	// Sinks with counters of their own (oversized events, tombstones) export
	// them by being collectors.
	if c, ok := sink.(prometheus.Collector); ok {
		reg.MustRegister(c)
	}
	var tracker *resume.Tracker
	if store != nil {
		tracker = resume.NewTracker(store, cfg.StateFlushInterval)
		registerTracker(reg, tracker)
	}
	popts := cfg.Pipeline
	if tracker != nil {
		// A uid a consumer may see is saved before it is published, so its
		// delete is never missed across a crash.
		popts.BeforePublish = tracker.Intend
	}
	if tracker != nil {
		// An ignored update's position counts as acknowledged once the
		// object's earlier events were: a restart does not send it.
		popts.OnAdvanced = func(c *change.Change) {
			tracker.Seed(c.Key(), resume.Entry{UID: c.UID(), ResourceVersion: c.Object.GetResourceVersion()})
		}
	}
	userAck := popts.OnAcknowledged
	var firstRoundDelivered atomic.Bool
	popts.OnAcknowledged = func(ev *kubestreamv1.Event, enqueued time.Time) {
		latency.Observe(time.Since(enqueued).Seconds())
		metrics.acknowledged(ev)
		if tracker != nil {
			tracker.Acknowledged(ev)
		}
		if ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END {
			if r := ev.GetReplay().GetReason(); r == kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL || r == kubestreamv1.ReplayReason_REPLAY_REASON_RESUME {
				firstRoundDelivered.Store(true)
			}
		}
		if userAck != nil {
			userAck(ev, enqueued)
		}
	}
	translator := &event.Translator{Cluster: cfg.ClusterName, Instance: cfg.Instance, ContentType: cfg.ContentType, ConfigMapData: cfg.ConfigMapData}
	pipe := pipeline.New(sink, translator, popts)
	sopts := source.Options{
		RestConfig: restCfg, Kinds: ks, Namespace: cfg.Namespace, Selector: cfg.Selector,
		Resync: cfg.Resync, Queue: pipe, Derivers: cfg.Derivers,
		HeartbeatInterval: cfg.HeartbeatInterval,
		CacheCompression:  cfg.CacheCompression,
	}
	if patterns {
		sopts.Covers = cfg.Selection.Covers
	}
	if cfg.Ignore != nil {
		sopts.Ignore = cfg.Ignore
	}
	src, err := source.New(sopts)
	if err != nil {
		closeSink(ctx)
		return BadInput(err)
	}
	registerNoise(reg, cfg.Ignore, src, pipe)
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "kubestream", Name: "replay_rounds_skipped_total",
		Help: "Replay rounds not started because the previous round was not delivered yet (the broker is behind or down)."},
		func() float64 { return float64(src.SkippedRounds()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kubestream", Name: "leader",
		Help: "1 while this replica leads and publishes, 0 while it stands by (always 1 without --leader-elect)."},
		func() float64 {
			if elector == nil || elector.IsLeader() {
				return 1
			}
			return 0
		}))
	var watcher *kindWatcher
	if followsKinds(cfg.Selection, ks) {
		watcher = newKindWatcher(*cfg.Selection, client, meta, restCfg.Host, cfg.Namespace, src, sink, reg)
	}
	unreadyAfter := cfg.UnreadyAfter
	if unreadyAfter <= 0 {
		unreadyAfter = time.Minute
	}
	var informersSynced atomic.Bool
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kubestream", Name: "informers_synced",
		Help: "1 once every informer listed its kind (a standby can take over), else 0."},
		func() float64 {
			if informersSynced.Load() {
				return 1
			}
			return 0
		}))
	ready := func() error {
		if elector != nil && !elector.IsLeader() {
			if !informersSynced.Load() {
				return errors.New("standby: informers not synced yet")
			}
			return nil // a synced standby is ready to take over
		}
		if !firstRoundDelivered.Load() {
			return errors.New("the first round (snapshot or resume) is not acknowledged by the broker yet")
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
	// The elector outlives the drain too: the lease is released only after
	// the last event and the state were written.
	electCtx, stopElect := context.WithCancel(context.WithoutCancel(ctx))
	electorDone := make(chan struct{})
	var lost atomic.Bool
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	if elector != nil {
		go func() {
			elector.Run(electCtx)
			close(electorDone)
		}()
		go func() {
			select {
			case <-elector.Lost():
				if electCtx.Err() == nil {
					lost.Store(true)
					logger.Error(ErrLostLeadership, "Stopping publishing now")
					stopWork()
					stopRun()
				}
			case <-electCtx.Done():
			}
		}()
	} else {
		close(electorDone)
	}

	g, gctx := errgroup.WithContext(runCtx)
	if srv != nil {
		g.Go(func() error { return srv.Serve(gctx) })
	}
	var trackerDone chan struct{}
	g.Go(func() error {
		stats, err := src.Start(gctx)
		if err != nil {
			return err
		}
		for _, st := range stats {
			logger.Info("Initial list synced", "kind", st.Kind, "objects", st.Objects, "took", st.Duration.Round(time.Millisecond).String())
		}
		informersSynced.Store(true)
		if elector != nil {
			select {
			case <-elector.Leading():
				logger.Info("Leading: publishing from now on", "identity", cfg.LeaderElection.Identity)
			case <-gctx.Done():
				return nil
			}
		}
		act := source.ActivateOptions{Mode: cfg.SnapshotOnStart}
		if tracker != nil {
			loadStart := time.Now()
			saved, err := tracker.Load(gctx)
			if err != nil {
				return fmt.Errorf("load saved positions: %w (run with --resume=false to start with a full snapshot)", err)
			}
			logger.Info("Loaded saved positions", "objects", len(saved), "took", time.Since(loadStart).Round(time.Millisecond).String())
			if len(saved) > 0 {
				act.Saved = saved
			}
			act.Seed = tracker.Seed
			trackerDone = make(chan struct{})
			go func() {
				tracker.Run(gctx)
				close(trackerDone)
			}()
		}
		metrics.activated(src.Activate(gctx, act))
		if watcher != nil {
			if err := watcher.run(gctx, restCfg, 30*time.Second); err != nil {
				return err
			}
		}
		src.RunReplays(gctx)
		return nil
	})
	runErr := g.Wait()

	// Ordered shutdown: informers stopped (Run returned); drain the queue
	// into the sink, stop the workers, save the positions, close the sink,
	// and only then give up the lease.
	timeout := cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	left := 0
	if !lost.Load() {
		left = pipe.Shutdown(drainCtx)
	}
	stopWork()
	<-workersDone
	if tracker != nil && !lost.Load() {
		if trackerDone != nil {
			<-trackerDone
		}
		if err := tracker.Flush(drainCtx); err != nil {
			logger.Error(err, "Saving acknowledged positions at shutdown failed: the next start re-sends what changed since the last save")
		}
	}
	if store != nil {
		_ = store.Close()
	}
	st := pipe.Stats()
	logger.Info("Stopped", "published", st.Published, "retried", st.Retried, "coalesced", st.Coalesced, "lost", st.Lost, "leftUnpublished", left)
	closeSink(drainCtx)
	stopElect()
	<-electorDone
	if lost.Load() {
		return ErrLostLeadership
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	if left > 0 {
		return fmt.Errorf("shutdown: %d changes not acknowledged within %s", left, timeout)
	}
	return nil
}

// openStateStore returns where positions are kept: --state-file, else the
// sink's own store; nil when resume is off or the sink has no place for it.
func openStateStore(ctx context.Context, cfg Config, sink Sink) (resume.Store, error) {
	logger := klog.FromContext(ctx)
	if !cfg.Resume {
		return nil, nil
	}
	if cfg.StateFile != "" {
		fs, err := resume.NewFileStore(cfg.StateFile, cfg.ClusterName)
		if err != nil {
			return nil, BadInput(err)
		}
		return fs, nil
	}
	ss, ok := sink.(StateStorer)
	if !ok {
		logger.Info("Resume is off: this sink keeps no state; give --state-file to resume from a file", "sink", fmt.Sprintf("%T", sink))
		return nil, nil
	}
	store, err := ss.StateStore(ctx, cfg.ClusterName)
	if errors.Is(err, resume.ErrNoStore) {
		logger.Info("Resume is off: this sink keeps no state; give --state-file to resume from a file", "reason", err.Error())
		return nil, nil
	}
	if errors.Is(err, resume.ErrMisconfigured) {
		return nil, BadInput(err)
	}
	if err != nil {
		return nil, fmt.Errorf("open the state store: %w", err)
	}
	return store, nil
}

// ignoredCollector exports kubestream_updates_ignored_total per watched
// kind (kinds may be discovered while running), 0 until one is ignored.
type ignoredCollector struct {
	f   *noise.Filter
	src *source.Source
}

var ignoredDesc = prometheus.NewDesc("kubestream_updates_ignored_total",
	"Updates not published because they changed only --ignore-paths (their position is still recorded).", []string{"kind"}, nil)

func (c ignoredCollector) Describe(ch chan<- *prometheus.Desc) { ch <- ignoredDesc }

func (c ignoredCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.f.Ignored()
	for _, k := range c.src.Kinds() {
		if _, ok := counts[k.Resource]; !ok {
			counts[k.Resource] = 0
		}
	}
	for kind, n := range counts {
		ch <- prometheus.MustNewConstMetric(ignoredDesc, prometheus.CounterValue, float64(n), kind)
	}
}

// registerNoise exports what noise control and heartbeats did.
func registerNoise(reg *prometheus.Registry, ignore *noise.Filter, src *source.Source, pipe *pipeline.Pipeline) {
	if ignore != nil {
		reg.MustRegister(ignoredCollector{f: ignore, src: src})
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "kubestream", Name: "heartbeats_deferred_total",
		Help: "Heartbeat ticks skipped for a kind because its handler was behind its informer."},
		func() float64 { return float64(src.HeartbeatsDeferred()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "kubestream", Name: "heartbeats_forced_total",
		Help: "Heartbeats published naming keys whose earlier events were still failing (pending_keys)."},
		func() float64 { return float64(pipe.Stats().HeartbeatsForced) }))
}

func registerTracker(reg *prometheus.Registry, t *resume.Tracker) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "kubestream", Name: "state_positions_written_total",
		Help: "Acknowledged positions (and removals) written to the state store."}, func() float64 { return float64(t.Stats().Written) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "kubestream", Name: "state_intents_written_total",
		Help: "Object incarnations saved before their first event was published."}, func() float64 { return float64(t.Stats().Intents) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "kubestream", Name: "state_flush_failures_total",
		Help: "Writes to the state store that failed (retried at the next flush, or the publish that needed them)."}, func() float64 { return float64(t.Stats().Failures) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kubestream", Name: "state_positions",
		Help: "Object incarnations in the state store."}, func() float64 { return float64(t.Stats().Known) }))
}

func newIdentitySuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// preflightLease checks that this identity may hold the Lease, so a missing
// permission fails at start instead of a replica waiting forever.
func preflightLease(ctx context.Context, client kubernetes.Interface, namespace, name string) error {
	for _, verb := range []string{"get", "create", "update"} {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Group: "coordination.k8s.io", Resource: "leases", Namespace: namespace, Name: name},
		}}
		if verb == "create" {
			review.Spec.ResourceAttributes.Name = ""
		}
		res, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("check permission to %s leases in %s: %w", verb, namespace, err)
		}
		if !res.Status.Allowed {
			return BadInput(fmt.Errorf("--leader-elect: not allowed to %s leases in namespace %s: grant get, create and update on coordination.k8s.io leases there (deploy/ has the Role), or set --leader-elect-resource-namespace", verb, namespace))
		}
	}
	return nil
}

func orAll(ns string) string {
	if strings.TrimSpace(ns) == "" {
		return "(all)"
	}
	return ns
}
