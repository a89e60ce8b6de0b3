// Package leader runs leader election for kubestream replicas with a
// coordination.k8s.io Lease (client-go's leaderelection), with the flags and
// defaults of kube-controller-manager and kube-scheduler. Only the leader
// publishes; standbys keep their informers synced so a takeover is fast.
package leader

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// Options configure the election.
type Options struct {
	Client kubernetes.Interface
	// Namespace and Name of the Lease.
	Namespace, Name string
	// Identity of this replica; unique among the replicas.
	Identity string
	// LeaseDuration is how long standbys wait after the last renewal before
	// taking over; RenewDeadline how long the leader keeps trying to renew
	// before it stops publishing; RetryPeriod the pause between attempts.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Defaults are kube-controller-manager's.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
	DefaultName          = "kubestream"
)

// DefaultNamespace is the pod's namespace in a cluster ($POD_NAMESPACE, else
// the service account's), else "default".
func DefaultNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}

// Validate checks the timings the way client-go will, with flag names.
func (o Options) Validate() []error {
	var errs []error
	if o.LeaseDuration <= o.RenewDeadline {
		errs = append(errs, fmt.Errorf("--leader-elect-lease-duration %s must be longer than --leader-elect-renew-deadline %s: standbys must not take over while the leader still tries to renew", o.LeaseDuration, o.RenewDeadline))
	}
	if o.RenewDeadline <= time.Duration(leaderelection.JitterFactor*float64(o.RetryPeriod)) {
		errs = append(errs, fmt.Errorf("--leader-elect-renew-deadline %s must be longer than %.1f x --leader-elect-retry-period %s", o.RenewDeadline, leaderelection.JitterFactor, o.RetryPeriod))
	}
	if o.RetryPeriod <= 0 {
		errs = append(errs, fmt.Errorf("--leader-elect-retry-period %s must be positive", o.RetryPeriod))
	}
	if o.Name == "" || o.Namespace == "" {
		errs = append(errs, fmt.Errorf("--leader-elect-resource-name and --leader-elect-resource-namespace must not be empty"))
	}
	return errs
}

// Elector is one replica's side of the election.
type Elector struct {
	le       *leaderelection.LeaderElector
	leading  chan struct{}
	lost     chan struct{}
	lostOnce sync.Once
	leader   atomic.Bool
}

// New builds the elector; nothing runs until Run.
func New(opts Options) (*Elector, error) {
	e := &Elector{leading: make(chan struct{}), lost: make(chan struct{})}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: opts.Namespace, Name: opts.Name},
		Client:     opts.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: opts.Identity},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   opts.LeaseDuration,
		RenewDeadline:   opts.RenewDeadline,
		RetryPeriod:     opts.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            opts.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) {
				e.leader.Store(true)
				close(e.leading)
			},
			OnStoppedLeading: func() {
				if e.leader.Swap(false) {
					e.lostOnce.Do(func() { close(e.lost) })
				}
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("leader election: %w", err)
	}
	e.le = le
	return e, nil
}

// Run takes part in the election until ctx ends (then a held lease is
// released, so a standby takes over at once) or the lease is lost.
func (e *Elector) Run(ctx context.Context) {
	klog.FromContext(ctx).Info("Waiting to lead", "lease", e.le.GetLeader())
	e.le.Run(ctx)
}

// Leading is closed once this replica leads.
func (e *Elector) Leading() <-chan struct{} { return e.leading }

// Lost is closed when this replica stopped leading: it could not renew in
// time, or Run's context ended.
func (e *Elector) Lost() <-chan struct{} { return e.lost }

// IsLeader reports whether this replica leads now.
func (e *Elector) IsLeader() bool { return e.leader.Load() }

// Leader is the identity of the last observed leader.
func (e *Elector) Leader() string { return e.le.GetLeader() }
