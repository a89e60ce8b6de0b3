package alertbridge

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// Defaults of the bridge's timing.
const (
	// DefaultResendInterval is how often firing alerts are sent again;
	// Alertmanager's resolve_timeout (5m) must not expire between sends.
	DefaultResendInterval = time.Minute
	// DefaultAlertTTL is the endsAt of firing alerts, counted from each
	// send. It outlasts kubestream's default --resync (30m), so a bridge
	// that restarts does not let its alerts end before the next replay
	// round re-states them; if the bridge is gone for good, they end after
	// this long.
	DefaultAlertTTL = time.Hour
	// DefaultMaxTracked bounds the firing alerts kept for re-sending.
	DefaultMaxTracked = 10000
)

// Poster sends alerts; *Client is the real one.
type Poster interface {
	Post(ctx context.Context, alerts []Alert) error
}

// Options tune a Bridge. Zero values take the defaults.
type Options struct {
	ResendInterval time.Duration
	AlertTTL       time.Duration
	// ExtraLabels are added to every alert (e.g. team=platform).
	ExtraLabels map[string]string
	// GeneratorURL links each alert to where it came from (a dashboard).
	GeneratorURL string
	// MinBackoff and MaxBackoff bound the wait between attempts while
	// Alertmanager does not accept. Defaults 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// MaxTracked bounds the number of firing alerts kept for re-sending.
	MaxTracked int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.ResendInterval <= 0 {
		o.ResendInterval = DefaultResendInterval
	}
	if o.AlertTTL <= 0 {
		o.AlertTTL = DefaultAlertTTL
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
	if o.MaxTracked <= 0 {
		o.MaxTracked = DefaultMaxTracked
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Stats count what the bridge did.
type Stats struct {
	// Events is the number of image-storage events handled.
	Events int64
	// Posts is the number of accepted POSTs (re-sends included).
	Posts int64
	// Retries counts failed attempts that were retried.
	Retries int64
	// Rejected counts events whose alerts Alertmanager refused as
	// malformed; they are acknowledged and dropped.
	Rejected int64
	// Skipped counts messages that were not image-storage events or could
	// not be decoded; they are acknowledged and dropped.
	Skipped int64
}

// Bridge turns image-storage events into alerts.
type Bridge struct {
	opts   Options
	client Poster

	// postMu serializes POSTs, so a re-send of a firing alert can never
	// overtake the resolve of the same alert.
	postMu sync.Mutex
	mu     sync.Mutex
	firing map[string]*tracked

	events, posts, retries, rejected, skipped atomic.Int64
}

// tracked is a firing alert kept for re-sending.
type tracked struct {
	severity kubestreamv1.Severity
	alert    Alert
}

// New returns a bridge posting through client.
func New(client Poster, opts Options) *Bridge {
	opts.defaults()
	return &Bridge{opts: opts, client: client, firing: map[string]*tracked{}}
}

// Stats returns the counters.
func (b *Bridge) Stats() Stats {
	return Stats{Events: b.events.Load(), Posts: b.posts.Load(), Retries: b.retries.Load(), Rejected: b.rejected.Load(), Skipped: b.skipped.Load()}
}

// Firing returns how many alerts the bridge re-sends.
func (b *Bridge) Firing() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.firing)
}

// Decode reads an event: protobuf as kubestream's NATS and Kafka sinks
// write it, or protojson as the stdout sink writes it. A valid protobuf
// Event never starts with '{' (it would be field 15, which Event lacks).
func Decode(data []byte) (*kubestreamv1.Event, error) {
	ev := &kubestreamv1.Event{}
	var err error
	if len(data) > 0 && data[0] == '{' {
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, ev)
	} else {
		err = proto.Unmarshal(data, ev)
	}
	if err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	return ev, nil
}

// Handle processes one message and returns nil when it may be acknowledged:
// its alerts were accepted by Alertmanager, or it carries nothing to send,
// or it can never be sent (undecodable, rejected as malformed: logged and
// counted). While Alertmanager does not accept, Handle retries with backoff,
// calling progress (when set) before each wait so the broker does not
// redeliver meanwhile; it returns an error only when ctx ends, and then the
// message must not be acknowledged.
func (b *Bridge) Handle(ctx context.Context, data []byte, progress func()) error {
	logger := klog.FromContext(ctx)
	ev, err := Decode(data)
	if err != nil {
		b.skipped.Add(1)
		logger.Error(err, "Skipping a message that is not a kubestream event", "bytes", len(data))
		return nil
	}
	if ev.GetImageStorage() == nil {
		b.skipped.Add(1)
		logger.V(4).Info("Skipping an event without image storage", "eventID", ev.GetId(), "operation", ev.GetOperation().String())
		return nil
	}
	b.events.Add(1)
	alerts, apply := b.plan(ev)
	if len(alerts) == 0 {
		apply()
		return nil
	}
	b.postMu.Lock()
	defer b.postMu.Unlock()
	backoff := b.opts.MinBackoff
	for attempt := 1; ; attempt++ {
		err := b.client.Post(ctx, alerts)
		if err == nil {
			b.posts.Add(1)
			apply()
			logger.V(2).Info("Posted alerts", "eventID", ev.GetId(), "node", ev.GetImageStorage().GetNode(),
				"severity", ev.GetImageStorage().GetSeverity().String(), "transition", ev.GetImageStorage().GetTransition().String(), "alerts", len(alerts))
			return nil
		}
		if errors.Is(err, ErrRejected) {
			b.rejected.Add(1)
			logger.Error(err, "Alertmanager rejected alerts; dropping the event", "eventID", ev.GetId(), "node", ev.GetImageStorage().GetNode())
			apply()
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("post alerts for event %s: %w", ev.GetId(), context.Cause(ctx))
		}
		b.retries.Add(1)
		logger.Info("Alertmanager did not accept alerts, retrying", "eventID", ev.GetId(), "attempt", attempt, "backoff", backoff.String(), "err", err.Error())
		if progress != nil {
			progress()
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return fmt.Errorf("post alerts for event %s: %w", ev.GetId(), context.Cause(ctx))
		case <-time.After(wait):
		}
		backoff = min(2*backoff, b.opts.MaxBackoff)
	}
}

// plan returns the alerts an event asks for and how to update the re-send
// state once they were accepted. It needs nothing but the event: severity,
// previous severity and transition say it all, so a bridge that restarts
// with empty state still acts right.
func (b *Bridge) plan(ev *kubestreamv1.Event) ([]Alert, func()) {
	is := ev.GetImageStorage()
	key := ev.GetCluster() + "/" + is.GetNode()
	now := b.opts.Now()
	sev, prev := is.GetSeverity(), is.GetPreviousSeverity()
	ann := annotations(ev)

	b.mu.Lock()
	cur := b.firing[key]
	b.mu.Unlock()

	resolve := func(s kubestreamv1.Severity) Alert {
		a := Alert{Labels: b.labels(ev, s), Annotations: ann, EndsAt: ptr(now), GeneratorURL: b.opts.GeneratorURL}
		if cur != nil && cur.severity == s {
			a.StartsAt = cur.alert.StartsAt
		}
		return a
	}

	if sev == kubestreamv1.Severity_SEVERITY_WARNING || sev == kubestreamv1.Severity_SEVERITY_CRITICAL {
		starts := ev.GetObservedAt().AsTime()
		if cur != nil && cur.severity == sev {
			starts = *cur.alert.StartsAt
		}
		fire := Alert{Labels: b.labels(ev, sev), Annotations: ann, StartsAt: ptr(starts), EndsAt: ptr(now.Add(b.opts.AlertTTL)), GeneratorURL: b.opts.GeneratorURL}
		alerts := []Alert{fire}
		// The severity is a label, so a warning and a critical alert are
		// two alerts: end the other one. Resolving an alert Alertmanager
		// never saw firing sends no notification.
		for _, s := range firingSeverities {
			if s != sev {
				alerts = append(alerts, resolve(s))
			}
		}
		return alerts, func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if _, ok := b.firing[key]; !ok && len(b.firing) >= b.opts.MaxTracked {
				return // bounded: this alert is not re-sent, it ends after AlertTTL unless events renew it
			}
			b.firing[key] = &tracked{severity: sev, alert: fire}
		}
	}

	untrack := func() {
		b.mu.Lock()
		delete(b.firing, key)
		b.mu.Unlock()
	}
	wasFiring := prev == kubestreamv1.Severity_SEVERITY_WARNING || prev == kubestreamv1.Severity_SEVERITY_CRITICAL || cur != nil
	if !wasFiring {
		return nil, untrack
	}
	return []Alert{resolve(kubestreamv1.Severity_SEVERITY_WARNING), resolve(kubestreamv1.Severity_SEVERITY_CRITICAL)}, untrack
}

// Resend posts every firing alert again with a renewed endsAt. It skips the
// round when an event's POST is in progress (that one is retrying anyway).
func (b *Bridge) Resend(ctx context.Context) {
	if !b.postMu.TryLock() {
		return
	}
	defer b.postMu.Unlock()
	b.mu.Lock()
	ends := b.opts.Now().Add(b.opts.AlertTTL)
	alerts := make([]Alert, 0, len(b.firing))
	for _, t := range b.firing {
		a := t.alert
		a.EndsAt = ptr(ends)
		alerts = append(alerts, a)
	}
	b.mu.Unlock()
	const chunk = 500
	for len(alerts) > 0 {
		n := min(chunk, len(alerts))
		if err := b.client.Post(ctx, alerts[:n]); err != nil {
			klog.FromContext(ctx).Info("Re-sending firing alerts failed; next round in the resend interval", "alerts", n, "err", err.Error())
			return
		}
		b.posts.Add(1)
		alerts = alerts[n:]
	}
}

// RunResend re-sends firing alerts every ResendInterval until ctx ends.
func (b *Bridge) RunResend(ctx context.Context) {
	t := time.NewTicker(b.opts.ResendInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.Resend(ctx)
		}
	}
}

func ptr[T any](v T) *T { return &v }
