package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/discover"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/source"
)

// StreamEnsurer is a sink that checks, before a kind discovered while
// running is published, that it can take the kind's stream (Kafka: its
// topic exists or can be created).
type StreamEnsurer interface {
	EnsureStreams(ctx context.Context, streams []string) error
}

// followsKinds reports whether the watched kinds can change while running:
// patterns, or custom resources (their definitions can change version or
// go away).
func followsKinds(sel *discover.Selection, ks []kinds.Kind) bool {
	if sel == nil {
		return false
	}
	return sel.HasPatterns() || slices.ContainsFunc(ks, func(k kinds.Kind) bool { return !k.Protobuf() })
}

// resolveKinds turns the selection into kinds with the cluster's discovery;
// without a selection the configured kinds are used as they are.
func resolveKinds(client kubernetes.Interface, cfg Config) ([]kinds.Kind, *discover.Index, error) {
	if cfg.Selection == nil {
		if len(cfg.Kinds) == 0 {
			return kinds.All(), nil, nil
		}
		return cfg.Kinds, nil, nil
	}
	idx, err := discover.Discover(client.Discovery())
	if err != nil {
		return nil, nil, err
	}
	ks, err := idx.Resolve(*cfg.Selection)
	if err != nil {
		return nil, nil, BadInput(fmt.Errorf("--kinds: %w", err))
	}
	return ks, idx, nil
}

// checkKind checks that this identity may list and watch a kind, so missing
// RBAC fails at once with a clear message instead of informers retrying
// forever.
func checkKind(ctx context.Context, meta metadata.Interface, client kubernetes.Interface, host string, k kinds.Kind, namespace string) error {
	ns := namespace
	if !k.Namespaced {
		ns = ""
	}
	fix := fmt.Sprintf("grant get, list and watch on %s (kubestream rbac --kinds %s prints the ClusterRole), or drop it from --kinds", k.Resource, k.Resource)
	_, err := meta.Resource(k.GVR()).Namespace(ns).List(ctx, metav1.ListOptions{Limit: 1})
	if apierrors.IsForbidden(err) {
		return BadInput(fmt.Errorf("not allowed to list %s: %s", k.Resource, fix))
	}
	if err != nil {
		return fmt.Errorf("list %s at %s: %w", k.Resource, host, err)
	}
	// Without watch, informers fall back to relisting and log "forbidden"
	// forever: refuse to start instead.
	if allowed, err := canDo(ctx, client, "watch", k.GVK.Group, k.Plural, ns); err == nil && !allowed {
		return BadInput(fmt.Errorf("not allowed to watch %s: %s", k.Resource, fix))
	}
	return nil
}

// canDo asks the apiserver whether this identity may do verb on a resource.
func canDo(ctx context.Context, client kubernetes.Interface, verb, group, resource, namespace string) (bool, error) {
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Group: group, Resource: resource, Namespace: namespace},
	}}
	res, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return res.Status.Allowed, nil
}

// kindWatcher keeps the watched kinds in line with the cluster while
// running: kinds a pattern picks that appear are added with their own first
// round, kinds served at another version are switched to it, kinds the
// cluster stops serving are removed (their objects deleted).
type kindWatcher struct {
	sel       discover.Selection
	client    kubernetes.Interface
	meta      metadata.Interface
	host      string
	namespace string
	src       *source.Source
	sink      Sink
	mu        sync.Mutex // one reconcile at a time
	added     prometheus.Counter
	removed   prometheus.Counter
	failures  prometheus.Counter
}

func newKindWatcher(sel discover.Selection, client kubernetes.Interface, meta metadata.Interface, host, namespace string, src *source.Source, sink Sink, reg prometheus.Registerer) *kindWatcher {
	w := &kindWatcher{sel: sel, client: client, meta: meta, host: host, namespace: namespace, src: src, sink: sink,
		added: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "kubestream", Name: "kinds_added_total",
			Help: "Kinds a --kinds pattern started watching while running (custom resource definitions created)."}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "kubestream", Name: "kinds_removed_total",
			Help: "Kinds no longer watched because the cluster stopped serving them."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "kubestream", Name: "kind_discovery_failures_total",
			Help: "Kinds a pattern picked that could not be watched (missing permission or topic); retried at the next discovery."}),
	}
	reg.MustRegister(w.added, w.removed, w.failures)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kubestream", Name: "watched_kinds",
		Help: "Kinds watched now."}, func() float64 { return float64(len(src.Kinds())) }))
	return w
}

// run follows the cluster's kinds: through a watch of custom resource
// definitions where this identity may watch them (patterns require it),
// else by re-reading discovery every pollEvery.
func (w *kindWatcher) run(ctx context.Context, cfg *rest.Config, pollEvery time.Duration) error {
	allowed, err := canDo(ctx, w.client, "watch", discover.Definitions.Group, discover.Definitions.Resource, "")
	if err == nil && allowed {
		if err := discover.WatchDefinitions(ctx, cfg, 5*time.Minute, time.Second, w.reconcile); err != nil {
			return err
		}
	} else {
		klog.FromContext(ctx).Info("Not allowed to watch custom resource definitions: re-reading discovery periodically instead", "every", pollEvery.String())
		go func() {
			t := time.NewTicker(pollEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					w.reconcile(ctx)
				}
			}
		}()
	}
	// Kinds that appeared between the start's discovery and the watch.
	w.reconcile(ctx)
	return nil
}

// reconcile compares the watched kinds with what discovery serves now.
func (w *kindWatcher) reconcile(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	logger := klog.FromContext(ctx)
	idx, err := discover.Discover(w.client.Discovery())
	if err != nil {
		logger.Error(err, "Rediscovering kinds failed; trying again at the next change")
		return
	}
	// Names that no longer resolve (a named kind's definition deleted) are
	// not errors while running: their objects are deleted below.
	desired, missing := idx.ResolveAvailable(w.sel)
	for _, err := range missing {
		logger.V(1).Info("A named kind is not served now", "reason", err.Error())
	}
	byResource := map[string]kinds.Kind{}
	for _, k := range desired {
		byResource[k.Resource] = k
	}
	for _, k := range w.src.Kinds() {
		if _, failed := idx.FailedGroups()[k.GVK.Group]; failed || idx.Served(k) {
			continue
		}
		// The same resource at another version: switch, deleting nothing
		// that still exists.
		if d, ok := byResource[k.Resource]; ok && d.GVK.Version != k.GVK.Version {
			if err := w.src.SwitchVersion(ctx, d); err != nil {
				w.failures.Inc()
				logger.Error(err, "Switching a kind to its served version failed; trying again at the next change", "kind", k.Resource)
			}
			continue
		}
		if w.src.RemoveKind(ctx, k.Resource) {
			w.removed.Inc()
		}
	}
	current := w.src.Kinds()
	var add []kinds.Kind
	for _, k := range desired {
		if slices.ContainsFunc(current, func(c kinds.Kind) bool { return c.Resource == k.Resource }) {
			continue
		}
		if err := w.admit(ctx, k); err != nil {
			w.failures.Inc()
			logger.Error(err, "Not watching a new kind", "kind", k.Resource)
			continue
		}
		add = append(add, k)
	}
	if len(add) == 0 {
		return
	}
	if _, err := w.src.AddKinds(ctx, add, nil); err != nil {
		if !errors.Is(err, context.Canceled) {
			logger.Error(err, "Watching new kinds failed", "kinds", kinds.Names(add))
		}
		return
	}
	w.added.Add(float64(len(add)))
}

// admit checks a new kind's permissions and stream.
func (w *kindWatcher) admit(ctx context.Context, k kinds.Kind) error {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := checkKind(cctx, w.meta, w.client, w.host, k, w.namespace); err != nil {
		return err
	}
	if se, ok := w.sink.(StreamEnsurer); ok {
		if err := se.EnsureStreams(cctx, []string{k.Resource}); err != nil {
			return err
		}
	}
	return nil
}
