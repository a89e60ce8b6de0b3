package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/app"
	"github.com/kubestream/kubestream/pkg/config"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/leader"
	"github.com/kubestream/kubestream/pkg/noise"
	"github.com/kubestream/kubestream/pkg/pipeline"
	"github.com/kubestream/kubestream/pkg/redact"
	"github.com/kubestream/kubestream/pkg/source"
)

// DefaultResync is the default replay period. Thirty minutes keeps a replay
// of a 10k-object cluster well under 1% of the bus's traffic while bounding
// how long a consumer that lost its state waits to rebuild it.
const DefaultResync = 30 * time.Minute

// sinkFactory opens one kind of sink. Sinks register from init in their own
// file (sink_<name>.go).
type sinkFactory struct {
	summary string
	// addFlags adds the sink's flags, all prefixed with its name.
	addFlags func(fs *pflag.FlagSet)
	// open validates the flags (clear errors marked with app.BadInput) and
	// connects.
	open app.SinkOpener
}

var sinkFactories = map[string]sinkFactory{}

func registerSink(name string, f sinkFactory) { sinkFactories[name] = f }

// runExtension adds flags to run and contributes derivers (image storage).
type runExtension struct {
	addFlags func(fs *pflag.FlagSet)
	derivers func() ([]source.Deriver, error)
	// streams names what the derivers publish to, when they are on.
	streams func() []string
}

var runExtensions []runExtension

func registerRunExtension(e runExtension) { runExtensions = append(runExtensions, e) }

func init() {
	register("run", command{summary: "stream object changes to a sink", run: runRun})
}

// defaultSink is NATS (an embedded server when no URL is given) when that
// sink is built in, else stdout.
func defaultSink() string {
	if _, ok := sinkFactories["nats"]; ok {
		return "nats"
	}
	return "stdout"
}

func sinkNames() []string {
	names := make([]string, 0, len(sinkFactories))
	for n := range sinkFactories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("kubestream run", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "YAML file of settings: keys are flag names (kafka-brokers: [a:9092])")
	var (
		kubeconfig    = fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)")
		kubeContext   = fs.String("context", "", "kubeconfig context (default: the current context)")
		clusterName   = fs.String("cluster-name", "default", "cluster name put on every event")
		instance      = fs.String("instance", "", "name of this kubestream instance on every event (default: $POD_NAME, else the host name)")
		kindList      = fs.String("kinds", strings.Join(kinds.Names(kinds.All()), ","), "kinds to watch, comma-separated")
		namespace     = fs.String("namespace", "", "watch namespaced kinds in this namespace only (default: all)")
		selector      = fs.String("selector", "", "label selector applied to every kind, e.g. 'team=payments,tier!=test'")
		resync        = fs.Duration("resync", DefaultResync, "replay period: every period, all objects are sent again as snapshots between begin/end markers; 0 disables")
		contentType   = fs.String("content-type", "protobuf", "encoding of object states in events: protobuf or json")
		sinkName      = fs.String("sink", defaultSink(), "where events go: "+strings.Join(sinkNames(), ", "))
		listenAddr    = fs.String("listen-address", ":8080", "address of /metrics, /healthz, /readyz and /debug/pprof; empty disables")
		workers       = fs.Int("workers", 4, "concurrent publish calls")
		batchSize     = fs.Int("batch-size", 256, "most events per publish call")
		shutdownAfter = fs.Duration("shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long to keep publishing what is queued")
		markerWait    = fs.Duration("replay-marker-wait", 30*time.Second, "how long a replay marker waits for objects whose events keep failing before it goes out naming them (pending_keys); negative waits forever")
		unreadyAfter  = fs.Duration("unready-after", time.Minute, "/readyz turns unready when an event has been failing to publish for this long")
		resumeOn      = fs.Bool("resume", true, "keep the acknowledged position of every object in the bus (Kafka: <prefix>.state, JetStream: a key-value bucket) and, on start or takeover, send only what changed meanwhile")
		stateFile     = fs.String("state-file", "", "keep the positions in this file instead (the stdout sink's only way to resume)")
		snapshotMode  = fs.String("snapshot-on-start", "auto", "auto: a full snapshot only without saved positions; always: on every start; never: no snapshot, objects appear when they change")
		leaderElect   = fs.Bool("leader-elect", false, "run as one of several replicas: only the holder of a coordination.k8s.io Lease publishes, standbys keep synced and take over")
		leaseDuration = fs.Duration("leader-elect-lease-duration", leader.DefaultLeaseDuration, "how long standbys wait after the leader's last renewal before taking over")
		renewDeadline = fs.Duration("leader-elect-renew-deadline", leader.DefaultRenewDeadline, "how long the leader tries to renew before it stops publishing")
		retryPeriod   = fs.Duration("leader-elect-retry-period", leader.DefaultRetryPeriod, "pause between attempts to acquire or renew the lease")
		leaseName     = fs.String("leader-elect-resource-name", leader.DefaultName, "name of the Lease")
		leaseNS       = fs.String("leader-elect-resource-namespace", "", "namespace of the Lease (default: the pod's namespace in a cluster, else default)")
	)
	// What is published: noise, config map values, watermarks.
	ignorePaths := noise.NewPaths(noise.Defaults)
	fs.Var(ignorePaths, "ignore-paths", "updates that change only these paths are not published (counted in kubestream_updates_ignored_total): [kind:]path rules, comma-separated; [*] is any index or key; metadata.resourceVersion stands for updates that change nothing else; empty ignores nothing")
	configMapData := fs.String("configmap-data", "full", "config map values in events: full; hash (each value replaced by its SHA-256); keys (values dropped). Sizes stay in the summary")
	heartbeatEvery := fs.Duration("heartbeat-interval", 30*time.Second, "period of each kind's HEARTBEAT event (latest resourceVersion seen, everything before it published); 0 disables")
	for _, name := range sinkNames() {
		sinkFactories[name].addFlags(fs)
	}
	for _, e := range runExtensions {
		e.addFlags(fs)
	}
	addLogFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: kubestream run [flags]\n\nStreams changes of Kubernetes objects to a sink. Every flag can also be set as\nKUBESTREAM_<FLAG> in the environment or as a key of the --config file.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "kubestream run: %v (see 'kubestream run --help')\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kubestream run: unexpected argument %q (flags start with --)\n", fs.Arg(0))
		return 2
	}

	var problems []string
	ks, err := kinds.Parse(*kindList)
	if err != nil {
		problems = append(problems, "--kinds: "+err.Error())
	}
	ct, err := parseContentType(*contentType)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if _, err := labels.Parse(*selector); err != nil {
		problems = append(problems, fmt.Sprintf("--selector %q is not a label selector (e.g. 'app=web,tier!=test'): %v", *selector, err))
	}
	if *resync < 0 {
		problems = append(problems, fmt.Sprintf("--resync %s is negative: use 0 to disable replays", *resync))
	}
	mode, err := parseSnapshotMode(*snapshotMode)
	if err != nil {
		problems = append(problems, err.Error())
	}
	var election *leader.Options
	if *leaderElect {
		election = &leader.Options{Namespace: orDefault(*leaseNS, leader.DefaultNamespace()), Name: *leaseName,
			LeaseDuration: *leaseDuration, RenewDeadline: *renewDeadline, RetryPeriod: *retryPeriod}
		for _, e := range election.Validate() {
			problems = append(problems, e.Error())
		}
	}
	if *unreadyAfter <= 0 {
		problems = append(problems, fmt.Sprintf("--unready-after %s must be positive", *unreadyAfter))
	}
	if *markerWait == 0 {
		problems = append(problems, "--replay-marker-wait 0 would let markers overtake every failing event: give a duration, or a negative one to wait forever")
	}
	if *workers < 1 || *batchSize < 1 {
		problems = append(problems, "--workers and --batch-size must be at least 1")
	}
	cmPolicy, err := redact.Parse(*configMapData)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if *heartbeatEvery < 0 {
		problems = append(problems, fmt.Sprintf("--heartbeat-interval %s is negative: use 0 to disable heartbeats", *heartbeatEvery))
	} else if *heartbeatEvery > 0 && *heartbeatEvery < time.Second {
		problems = append(problems, fmt.Sprintf("--heartbeat-interval %s is under a second: heartbeats carry whole seconds, use 1s or more", *heartbeatEvery))
	}
	ignore, err := noise.New(ignorePaths.Rules())
	if err != nil {
		problems = append(problems, err.Error())
	} else if ignorePaths.Given() {
		// Rules the user wrote for a kind not watched are a typo or a
		// forgotten --kinds; the defaults name nodes whatever is watched.
		for _, k := range ignore.Kinds() {
			if !slices.Contains(kinds.Names(ks), k) {
				problems = append(problems, fmt.Sprintf("--ignore-paths names kind %q, which is not watched: add it to --kinds or drop its rules", k))
			}
		}
	}
	factory, ok := sinkFactories[*sinkName]
	if !ok {
		problems = append(problems, fmt.Sprintf("--sink %q is unknown: choose one of %s", *sinkName, strings.Join(sinkNames(), ", ")))
	}
	var (
		derivers       []source.Deriver
		derivedStreams []string
	)
	for _, e := range runExtensions {
		ds, err := e.derivers()
		if err != nil {
			// One line per problem, each with the command's prefix.
			problems = append(problems, strings.Split(err.Error(), "\n")...)
		}
		derivers = append(derivers, ds...)
		// Image storage derives from nodes: without them its stream stays
		// empty, and its topic is not required.
		if len(ds) > 0 && e.streams != nil && watchesNodes(ks) {
			derivedStreams = append(derivedStreams, e.streams()...)
		}
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "kubestream run: %s\n", p)
		}
		return 2
	}

	logger := klog.Background()
	ctx = klog.NewContext(ctx, logger)
	err = app.Run(ctx, app.Config{
		Kubeconfig:      *kubeconfig,
		Context:         *kubeContext,
		ClusterName:     *clusterName,
		Instance:        orDefault(*instance, defaultInstance()),
		Kinds:           ks,
		Namespace:       *namespace,
		Selector:        *selector,
		Resync:          *resync,
		ContentType:     ct,
		ListenAddress:   *listenAddr,
		ShutdownTimeout: *shutdownAfter,
		Derivers:        derivers,
		DerivedStreams:  derivedStreams,
		UnreadyAfter:    *unreadyAfter,
		Resume:          *resumeOn,
		StateFile:       *stateFile,
		SnapshotOnStart: mode,
		LeaderElection:  election,
		Pipeline:        pipeline.Options{Workers: *workers, BatchSize: *batchSize, MarkerWait: *markerWait},

		Ignore:            ignore,
		ConfigMapData:     cmPolicy,
		HeartbeatInterval: *heartbeatEvery,
	}, factory.open)
	klog.Flush()
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}

func watchesNodes(ks []kinds.Kind) bool {
	for _, k := range ks {
		if k.Resource == kinds.Nodes.Resource {
			return true
		}
	}
	return false
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "kubestream run: %v\n", err)
	if app.IsBadInput(err) {
		return 2
	}
	return 1
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

// addLogFlags exposes klog's verbosity flags, not its file-logging ones:
// logs go to stderr, where container runtimes collect them.
func addLogFlags(fs *pflag.FlagSet) {
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	for _, name := range []string{"v", "vmodule"} {
		fs.AddGoFlag(klogFlags.Lookup(name))
	}
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func defaultInstance() string {
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "kubestream"
}
