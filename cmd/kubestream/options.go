package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/app"
	"github.com/kubestream/kubestream/pkg/discover"
	"github.com/kubestream/kubestream/pkg/imagestorage"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/leader"
	"github.com/kubestream/kubestream/pkg/noise"
	"github.com/kubestream/kubestream/pkg/pipeline"
	"github.com/kubestream/kubestream/pkg/redact"
	kafkasink "github.com/kubestream/kubestream/pkg/sink/kafka"
	"github.com/kubestream/kubestream/pkg/source"
)

// DefaultResync is the default replay period. Thirty minutes keeps a replay
// of a 10k-object cluster well under 1% of the bus's traffic while bounding
// how long a consumer that lost its state waits to rebuild it.
const DefaultResync = 30 * time.Minute

// sinkNames are the values of --sink.
var sinkNames = []string{"kafka", "nats", "stdout"}

// runOptions are the flags of `kubestream run`: AddFlags binds them,
// Validate reports every problem at once (sink flags included), Complete
// turns valid options into app.Run's configuration and the sink's opener.
// None of them contacts the cluster or a broker, so bad input fails before
// anything starts.
type runOptions struct {
	Kubeconfig, Context string
	ClusterName         string
	// Instance is put on every event; default $POD_NAME, else the host name.
	Instance string
	// Kinds is the --kinds list as given (names and patterns, resolved
	// with discovery at start); Validate checks its syntax. ExcludeKinds
	// and MetadataOnly are --exclude-kinds and --kinds-metadata-only.
	Kinds        string
	ExcludeKinds string
	MetadataOnly string
	Namespace    string
	Selector     string
	Resync       time.Duration
	// ContentType is protobuf or json.
	ContentType   string
	Sink          string
	ListenAddress string

	Workers, BatchSize int
	ShutdownTimeout    time.Duration
	ReplayMarkerWait   time.Duration
	UnreadyAfter       time.Duration

	Resume          bool
	StateFile       string
	SnapshotOnStart string

	LeaderElect    bool
	LeaseDuration  time.Duration
	RenewDeadline  time.Duration
	RetryPeriod    time.Duration
	LeaseName      string
	LeaseNamespace string

	// What is published: --ignore-paths, --configmap-data,
	// --heartbeat-interval.
	IgnorePaths       *noise.Paths
	ConfigMapData     string
	HeartbeatInterval time.Duration

	CacheCompression bool

	Kafka        kafkasink.Options
	NATS         natsSinkOptions
	ImageStorage imagestorage.Options
}

func newRunOptions() *runOptions {
	return &runOptions{
		ClusterName:       "default",
		Kinds:             strings.Join(kinds.Names(kinds.All()), ","),
		ExcludeKinds:      discover.DefaultExclude,
		MetadataOnly:      discover.DefaultMetadataOnly,
		Resync:            DefaultResync,
		ContentType:       "protobuf",
		Sink:              "nats",
		ListenAddress:     ":8080",
		Workers:           4,
		BatchSize:         256,
		ShutdownTimeout:   30 * time.Second,
		ReplayMarkerWait:  30 * time.Second,
		UnreadyAfter:      time.Minute,
		Resume:            true,
		SnapshotOnStart:   "auto",
		LeaseDuration:     leader.DefaultLeaseDuration,
		RenewDeadline:     leader.DefaultRenewDeadline,
		RetryPeriod:       leader.DefaultRetryPeriod,
		LeaseName:         leader.DefaultName,
		IgnorePaths:       noise.NewPaths(noise.Defaults),
		ConfigMapData:     "full",
		HeartbeatInterval: 30 * time.Second,
		CacheCompression:  true,
		Kafka:             kafkasink.NewOptions(),
		NATS:              newNATSSinkOptions(),
		ImageStorage:      imagestorage.DefaultOptions(),
	}
}

// AddFlags binds every flag of run to o, o's values being the defaults.
func (o *runOptions) AddFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "YAML file of settings: keys are flag names (kafka-brokers: [a:9092])")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)")
	fs.StringVar(&o.Context, "context", o.Context, "kubeconfig context (default: the current context)")
	fs.StringVar(&o.ClusterName, "cluster-name", o.ClusterName, "cluster name put on every event")
	fs.StringVar(&o.Instance, "instance", o.Instance, "name of this kubestream instance on every event (default: $POD_NAME, else the host name)")
	fs.StringVar(&o.Kinds, "kinds", o.Kinds, "kinds to watch, comma-separated, as kubectl names them (pods, deploy, deployments.apps, certificates.cert-manager.io, rollouts.v1alpha1.argoproj.io) or patterns ('*', '*.example.com': kinds created while running are picked up)")
	fs.StringVar(&o.ExcludeKinds, "exclude-kinds", o.ExcludeKinds, "kinds --kinds patterns leave out unless named (names or patterns); empty leaves out nothing")
	fs.StringVar(&o.MetadataOnly, "kinds-metadata-only", o.MetadataOnly, "kinds watched as metadata only: names, labels, annotations and owners, never spec, status or data (names or patterns); empty for none")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "watch namespaced kinds in this namespace only (default: all)")
	fs.StringVar(&o.Selector, "selector", o.Selector, "label selector applied to every kind, e.g. 'team=payments,tier!=test'")
	fs.DurationVar(&o.Resync, "resync", o.Resync, "replay period: every period, all objects are sent again as snapshots between begin/end markers; 0 disables")
	fs.StringVar(&o.ContentType, "content-type", o.ContentType, "encoding of object states in events: protobuf or json")
	fs.StringVar(&o.Sink, "sink", o.Sink, "where events go: "+strings.Join(sinkNames, ", ")+" (nats without --nats-url runs an embedded server)")
	fs.StringVar(&o.ListenAddress, "listen-address", o.ListenAddress, "address of /metrics, /healthz, /readyz and /debug/pprof; empty disables")
	fs.IntVar(&o.Workers, "workers", o.Workers, "concurrent publish calls")
	fs.IntVar(&o.BatchSize, "batch-size", o.BatchSize, "most events per publish call")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "on SIGINT/SIGTERM, how long to keep publishing what is queued")
	fs.DurationVar(&o.ReplayMarkerWait, "replay-marker-wait", o.ReplayMarkerWait, "how long a replay marker waits for objects whose events keep failing before it goes out naming them (pending_keys); negative waits forever")
	fs.DurationVar(&o.UnreadyAfter, "unready-after", o.UnreadyAfter, "/readyz turns unready when an event has been failing to publish for this long")
	fs.BoolVar(&o.Resume, "resume", o.Resume, "keep the acknowledged position of every object in the bus (Kafka: <prefix>.state, JetStream: a key-value bucket) and, on start or takeover, send only what changed meanwhile")
	fs.StringVar(&o.StateFile, "state-file", o.StateFile, "keep the positions in this file instead (the stdout sink's only way to resume)")
	fs.StringVar(&o.SnapshotOnStart, "snapshot-on-start", o.SnapshotOnStart, "auto: a full snapshot only without saved positions; always: on every start; never: no snapshot, objects appear when they change")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "run as one of several replicas: only the holder of a coordination.k8s.io Lease publishes, standbys keep synced and take over")
	fs.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", o.LeaseDuration, "how long standbys wait after the leader's last renewal before taking over")
	fs.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", o.RenewDeadline, "how long the leader tries to renew before it stops publishing")
	fs.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", o.RetryPeriod, "pause between attempts to acquire or renew the lease")
	fs.StringVar(&o.LeaseName, "leader-elect-resource-name", o.LeaseName, "name of the Lease")
	fs.StringVar(&o.LeaseNamespace, "leader-elect-resource-namespace", o.LeaseNamespace, "namespace of the Lease (default: the pod's namespace in a cluster, else default)")
	fs.Var(o.IgnorePaths, "ignore-paths", "updates that change only these paths are not published (counted in kubestream_updates_ignored_total): [kind:]path rules, comma-separated; [*] is any index or key; metadata.resourceVersion stands for updates that change nothing else; empty ignores nothing")
	fs.StringVar(&o.ConfigMapData, "configmap-data", o.ConfigMapData, "config map values in events: full; hash (each value replaced by its SHA-256); keys (values dropped). Sizes stay in the summary")
	fs.DurationVar(&o.HeartbeatInterval, "heartbeat-interval", o.HeartbeatInterval, "period of each kind's HEARTBEAT event (latest resourceVersion seen, everything before it published); 0 disables")
	fs.BoolVar(&o.CacheCompression, "cache-compression", o.CacheCompression, "keep cached objects compressed with a dictionary of their kind's objects (a tenth of the memory for a few microseconds per event), for kinds past "+strconv.Itoa(source.CompressAfter)+" objects")
	o.Kafka.AddFlags(fs)
	o.NATS.AddFlags(fs)
	o.ImageStorage.AddFlags(fs)
}

// Validate reports every problem of the flags, each on its own line saying
// what is wrong and how to fix it. The chosen sink's flags are checked too;
// the other sinks' flags are ignored.
func (o *runOptions) Validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, err := o.selection(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			errs = append(errs, errors.New(line))
		}
	}
	if _, err := parseContentType(o.ContentType); err != nil {
		errs = append(errs, err)
	}
	if _, err := labels.Parse(o.Selector); err != nil {
		bad("--selector %q is not a label selector (e.g. 'app=web,tier!=test'): %v", o.Selector, err)
	}
	if o.Resync < 0 {
		bad("--resync %s is negative: use 0 to disable replays", o.Resync)
	}
	if _, err := parseSnapshotMode(o.SnapshotOnStart); err != nil {
		errs = append(errs, err)
	}
	if o.LeaderElect {
		errs = append(errs, o.election().Validate()...)
	}
	if o.UnreadyAfter <= 0 {
		bad("--unready-after %s must be positive", o.UnreadyAfter)
	}
	if o.ReplayMarkerWait == 0 {
		bad("--replay-marker-wait 0 would let markers overtake every failing event: give a duration, or a negative one to wait forever")
	}
	if o.Workers < 1 || o.BatchSize < 1 {
		bad("--workers and --batch-size must be at least 1")
	}
	if o.ShutdownTimeout <= 0 {
		bad("--shutdown-timeout %s must be positive: it bounds how long queued events are published at exit", o.ShutdownTimeout)
	}
	if o.ListenAddress != "" {
		if _, _, err := net.SplitHostPort(o.ListenAddress); err != nil {
			bad("--listen-address %q is not host:port (for example :8080), or empty to disable", o.ListenAddress)
		}
	}
	if _, err := redact.Parse(o.ConfigMapData); err != nil {
		errs = append(errs, err)
	}
	if o.HeartbeatInterval < 0 {
		bad("--heartbeat-interval %s is negative: use 0 to disable heartbeats", o.HeartbeatInterval)
	} else if o.HeartbeatInterval > 0 && o.HeartbeatInterval < time.Second {
		bad("--heartbeat-interval %s is under a second: heartbeats carry whole seconds, use 1s or more", o.HeartbeatInterval)
	}
	if ignore, err := noise.New(o.IgnorePaths.Rules()); err != nil {
		errs = append(errs, err)
	} else if sel, err := o.selection(); err == nil && o.IgnorePaths.Given() {
		// Rules the user wrote for a kind not watched are a typo or a
		// forgotten --kinds; the defaults name nodes whatever is watched.
		for _, k := range ignore.Kinds() {
			if !sel.Covers(k) && !named(sel, k) {
				bad("--ignore-paths names kind %q, which is not watched: add it to --kinds or drop its rules", k)
			}
		}
	}
	switch o.Sink {
	case "kafka":
		errs = append(errs, unjoin(o.Kafka.Validate())...)
	case "nats":
		errs = append(errs, o.NATS.Validate()...)
	case "stdout":
	default:
		bad("--sink %q is unknown: choose one of %s", o.Sink, strings.Join(sinkNames, ", "))
	}
	return append(errs, o.ImageStorage.Validate()...)
}

// unjoin splits an errors.Join into its errors, one problem per line.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func (o *runOptions) election() leader.Options {
	return leader.Options{Namespace: orDefault(o.LeaseNamespace, leader.DefaultNamespace()), Name: o.LeaseName,
		LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod}
}

// Complete turns options that passed Validate into app.Run's configuration
// and the chosen sink's opener; stdout is where the stdout sink writes.
func (o *runOptions) Complete(stdout io.Writer) (app.Config, app.SinkOpener, error) {
	sel, err := o.selection()
	if err != nil {
		return app.Config{}, nil, err
	}
	ct, err := parseContentType(o.ContentType)
	if err != nil {
		return app.Config{}, nil, err
	}
	mode, err := parseSnapshotMode(o.SnapshotOnStart)
	if err != nil {
		return app.Config{}, nil, err
	}
	cfg := app.Config{
		Kubeconfig:      o.Kubeconfig,
		Context:         o.Context,
		ClusterName:     o.ClusterName,
		Instance:        orDefault(o.Instance, defaultInstance()),
		Selection:       &sel,
		Namespace:       o.Namespace,
		Selector:        o.Selector,
		Resync:          o.Resync,
		ContentType:     ct,
		ListenAddress:   o.ListenAddress,
		ShutdownTimeout: o.ShutdownTimeout,
		UnreadyAfter:    o.UnreadyAfter,
		Resume:          o.Resume,
		StateFile:       o.StateFile,
		SnapshotOnStart: mode,
		Pipeline:        pipeline.Options{Workers: o.Workers, BatchSize: o.BatchSize, MarkerWait: o.ReplayMarkerWait},
	}
	if o.LeaderElect {
		e := o.election()
		cfg.LeaderElection = &e
	}
	if cfg.ConfigMapData, err = redact.Parse(o.ConfigMapData); err != nil {
		return app.Config{}, nil, err
	}
	if cfg.Ignore, err = noise.New(o.IgnorePaths.Rules()); err != nil {
		return app.Config{}, nil, err
	}
	cfg.HeartbeatInterval = o.HeartbeatInterval
	cfg.CacheCompression = o.CacheCompression
	if o.ImageStorage.Enabled {
		cfg.Derivers = []source.Deriver{imagestorage.NewTracker(o.ImageStorage)}
		// Image storage derives from nodes: without them its stream stays
		// empty, and app.Run does not require its topic.
		cfg.DerivedStreams = []string{kinds.ImageStorage}
	}
	var open app.SinkOpener
	switch o.Sink {
	case "kafka":
		open = openKafka(o.Kafka)
	case "nats":
		open = o.NATS.open
	case "stdout":
		open = openStdout(stdout)
	default:
		return app.Config{}, nil, errors.New("--sink: " + o.Sink + " is unknown")
	}
	return cfg, open, nil
}

// named reports whether a kind is among the kinds --kinds names, in
// kubestream's spelling (a typed kind's short names resolve to it).
func named(sel discover.Selection, resource string) bool {
	for _, n := range sel.Names {
		if n == resource {
			return true
		}
		if k, err := kinds.Parse(n); err == nil && len(k) == 1 && k[0].Resource == resource {
			return true
		}
	}
	return false
}

// selection parses --kinds, --exclude-kinds and --kinds-metadata-only;
// names are resolved with the cluster's discovery at start.
func (o *runOptions) selection() (discover.Selection, error) {
	return discover.Parse(o.Kinds, o.ExcludeKinds, o.MetadataOnly)
}

func parseSnapshotMode(s string) (source.SnapshotMode, error) {
	switch strings.ToLower(s) {
	case "auto":
		return source.SnapshotAuto, nil
	case "always":
		return source.SnapshotAlways, nil
	case "never":
		return source.SnapshotNever, nil
	}
	return 0, fmt.Errorf("--snapshot-on-start %q is unknown: use auto, always or never", s)
}

func parseContentType(s string) (kubestreamv1.ContentType, error) {
	switch strings.ToLower(s) {
	case "protobuf", "proto":
		return kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF, nil
	case "json":
		return kubestreamv1.ContentType_CONTENT_TYPE_JSON, nil
	}
	return 0, fmt.Errorf("--content-type %q is unknown: use protobuf or json", s)
}
