package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/kinds"
)

// StreamOptions configure the JetStream stream events go to.
type StreamOptions struct {
	// Name of the stream. Empty selects core NATS (no stream, no acks).
	Name string
	// Create creates the stream, or updates an existing one to the settings
	// below and adds our subjects to it. Without it the stream must exist
	// and cover our subjects.
	Create bool
	// Retention: limits (default), interest or workqueue.
	Retention string
	// MaxAge drops messages older than this; 0 keeps them until MaxBytes.
	MaxAge time.Duration
	// MaxBytes bounds the stream's size; -1 is unlimited.
	MaxBytes int64
	// Storage: file (default) or memory.
	Storage  string
	Replicas int
	// DuplicateWindow is how long the server remembers message ids to drop
	// duplicates (retries, replays of the same change).
	DuplicateWindow time.Duration
}

// Defaults of the stream settings.
const (
	DefaultStreamMaxAge          = 7 * 24 * time.Hour
	DefaultStreamDuplicateWindow = 2 * time.Minute
)

// AddFlags registers the stream flags, all prefixed "nats-stream".
func (o *StreamOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Name, "nats-stream", "", "JetStream stream to publish to (acknowledged, deduplicated); empty publishes on core NATS (no acknowledgements)")
	fs.BoolVar(&o.Create, "nats-stream-create", false, "create the stream, or update it to the --nats-stream-* settings and add our subjects; without it the stream must exist and cover <prefix>.>")
	fs.StringVar(&o.Retention, "nats-stream-retention", "limits", "stream retention when creating: limits, interest or workqueue")
	fs.DurationVar(&o.MaxAge, "nats-stream-max-age", DefaultStreamMaxAge, "stream max age when creating; 0 keeps messages until --nats-stream-max-bytes")
	fs.Int64Var(&o.MaxBytes, "nats-stream-max-bytes", -1, "stream size limit in bytes when creating; -1 is unlimited")
	fs.StringVar(&o.Storage, "nats-stream-storage", "file", "stream storage when creating: file or memory")
	fs.IntVar(&o.Replicas, "nats-stream-replicas", 1, "stream replicas when creating (1, 3 or 5 in a cluster)")
	fs.DurationVar(&o.DuplicateWindow, "nats-stream-duplicate-window", DefaultStreamDuplicateWindow, "how long the server drops messages whose Nats-Msg-Id it has seen")
}

// Validate reports every problem with the options.
func (o *StreamOptions) Validate() []error {
	var errs []error
	if o.Name == "" {
		if o.Create {
			errs = append(errs, errors.New("--nats-stream-create needs --nats-stream: name the stream to create"))
		}
		return errs
	}
	if strings.ContainsAny(o.Name, ".*> \t\r\n") {
		errs = append(errs, fmt.Errorf("--nats-stream %q: stream names may not contain '.', '*', '>' or whitespace", o.Name))
	}
	if _, err := o.retention(); err != nil {
		errs = append(errs, err)
	}
	if _, err := o.storage(); err != nil {
		errs = append(errs, err)
	}
	if o.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("--nats-stream-max-age %s is negative: use 0 for no age limit", o.MaxAge))
	}
	if o.Replicas < 0 || o.Replicas > 5 {
		errs = append(errs, fmt.Errorf("--nats-stream-replicas %d: use 1 to 5 (0 means 1)", o.Replicas))
	}
	if o.DuplicateWindow < 0 {
		errs = append(errs, fmt.Errorf("--nats-stream-duplicate-window %s is negative", o.DuplicateWindow))
	}
	if o.MaxAge > 0 && o.DuplicateWindow > o.MaxAge {
		errs = append(errs, fmt.Errorf("--nats-stream-duplicate-window %s is longer than --nats-stream-max-age %s: the server refuses that", o.DuplicateWindow, o.MaxAge))
	}
	return errs
}

func (o *StreamOptions) retention() (jetstream.RetentionPolicy, error) {
	switch strings.ToLower(o.Retention) {
	case "", "limits":
		return jetstream.LimitsPolicy, nil
	case "interest":
		return jetstream.InterestPolicy, nil
	case "workqueue":
		return jetstream.WorkQueuePolicy, nil
	}
	return 0, fmt.Errorf("--nats-stream-retention %q: use limits, interest or workqueue", o.Retention)
}

func (o *StreamOptions) storage() (jetstream.StorageType, error) {
	switch strings.ToLower(o.Storage) {
	case "", "file":
		return jetstream.FileStorage, nil
	case "memory":
		return jetstream.MemoryStorage, nil
	}
	return 0, fmt.Errorf("--nats-stream-storage %q: use file or memory", o.Storage)
}

// Config returns the stream configuration to create for prefix.
func (o *StreamOptions) Config(prefix string) (jetstream.StreamConfig, error) {
	ret, err := o.retention()
	if err != nil {
		return jetstream.StreamConfig{}, err
	}
	st, err := o.storage()
	if err != nil {
		return jetstream.StreamConfig{}, err
	}
	maxBytes := o.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	return jetstream.StreamConfig{
		Name:        o.Name,
		Description: "Kubernetes object changes published by kubestream",
		Subjects:    []string{prefix + ".>"},
		Retention:   ret,
		MaxAge:      o.MaxAge,
		MaxBytes:    maxBytes,
		Storage:     st,
		Replicas:    max(o.Replicas, 1),
		Duplicates:  o.DuplicateWindow,
		// A full stream drops its oldest messages rather than refusing new
		// ones: refusing would stall the pipeline behind a full disk.
		Discard: jetstream.DiscardOld,
	}, nil
}

// EnsureStream creates or updates the stream when allowed, else checks that
// it exists and covers every subject the sink publishes.
func EnsureStream(ctx context.Context, js jetstream.JetStream, o StreamOptions, prefix string) (*jetstream.StreamInfo, error) {
	logger := klog.FromContext(ctx)
	want, err := o.Config(prefix)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, o.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && o.Create:
		stream, err = js.CreateStream(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("create JetStream stream %s: %w", o.Name, err)
		}
		logger.Info("Created JetStream stream", "stream", o.Name, "subjects", want.Subjects, "storage", want.Storage.String(), "maxAge", want.MaxAge.String(), "replicas", want.Replicas)
		return stream.CachedInfo(), nil
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("JetStream stream %s does not exist: create it with subjects %q, or pass --nats-stream-create", o.Name, prefix+".>")
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return nil, fmt.Errorf("JetStream is not enabled on the NATS server: enable it (nats-server -js), or publish on core NATS by leaving --nats-stream empty: %w", err)
	case err != nil:
		return nil, fmt.Errorf("look up JetStream stream %s: %w", o.Name, err)
	}
	info := stream.CachedInfo()
	missing := uncovered(info.Config.Subjects, prefix)
	if !o.Create {
		if len(missing) > 0 {
			return nil, fmt.Errorf("JetStream stream %s has subjects %q, which do not cover %q: add %q to it, or pass --nats-stream-create to let kubestream add it",
				o.Name, info.Config.Subjects, missing, prefix+".>")
		}
		if info.Config.Duplicates <= 0 {
			logger.Info("JetStream stream has no duplicate window: retried events may be stored twice", "stream", o.Name)
		}
		return info, nil
	}
	cfg := info.Config
	if len(missing) > 0 {
		// A stream's subjects may not overlap: ours replaces any of theirs
		// it covers.
		ours := prefix + ".>"
		cfg.Subjects = slices.DeleteFunc(slices.Clone(cfg.Subjects), func(s string) bool { return Covers(ours, s) })
		cfg.Subjects = append(cfg.Subjects, ours)
	}
	cfg.Retention, cfg.MaxAge, cfg.MaxBytes, cfg.Storage = want.Retention, want.MaxAge, want.MaxBytes, want.Storage
	cfg.Replicas, cfg.Duplicates, cfg.Discard = want.Replicas, want.Duplicates, want.Discard
	stream, err = js.UpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("update JetStream stream %s (retention and storage of an existing stream cannot change: match them with --nats-stream-retention/--nats-stream-storage): %w", o.Name, err)
	}
	logger.Info("Updated JetStream stream", "stream", o.Name, "subjects", cfg.Subjects)
	return stream.CachedInfo(), nil
}

// uncovered lists the subject families of prefix no stream subject covers.
func uncovered(streamSubjects []string, prefix string) []string {
	var missing []string
	for _, fam := range Families(prefix, kinds.All()) {
		ok := false
		for _, s := range streamSubjects {
			if Covers(s, fam) {
				ok = true
				break
			}
		}
		if !ok {
			missing = append(missing, fam)
		}
	}
	return missing
}
