package alertbridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/spf13/pflag"

	"github.com/kubestream/kubestream/pkg/config"
	kafkasink "github.com/kubestream/kubestream/pkg/sink/kafka"
	natssink "github.com/kubestream/kubestream/pkg/sink/nats"
)

// Config is everything `kubestream alert-bridge` is told.
type Config struct {
	// Source is "nats" or "kafka".
	Source string

	NATS              natssink.ConnOptions
	NATSSubjectPrefix string
	NATSStream        string
	NATSDurable       string
	NATSCore          bool
	NATSAckWait       time.Duration

	KafkaBrokers     []string
	KafkaTopicPrefix string
	KafkaTopic       string
	KafkaGroup       string
	KafkaStartOffset string
	KafkaTLS         kafkasink.TLSOptions
	KafkaSASL        kafkasink.SASLOptions

	AlertmanagerURLs    []string
	BearerToken         string
	BearerTokenFile     string
	AlertmanagerTimeout time.Duration
	ResendInterval      time.Duration
	AlertTTL            time.Duration
	Labels              map[string]string
	GeneratorURL        string
	MaxTrackedAlerts    int
	// ListenAddress serves /metrics, /healthz and /readyz; empty disables.
	ListenAddress string
}

// DefaultConfig returns the defaults the flags show.
func DefaultConfig() Config {
	return Config{
		Source:              "nats",
		NATSSubjectPrefix:   DefaultPrefix,
		NATSDurable:         DefaultConsumerName,
		NATSAckWait:         30 * time.Second,
		KafkaTopicPrefix:    DefaultPrefix,
		KafkaGroup:          DefaultConsumerName,
		KafkaStartOffset:    "first",
		AlertmanagerTimeout: 10 * time.Second,
		ResendInterval:      DefaultResendInterval,
		AlertTTL:            DefaultAlertTTL,
		MaxTrackedAlerts:    DefaultMaxTracked,
		ListenAddress:       DefaultListenAddress,
	}
}

// DefaultListenAddress is next to kubestream run's :8080, so both fit in
// one pod.
const DefaultListenAddress = ":8081"

// AddFlags binds the flags to c; call it on DefaultConfig.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Source, "source", c.Source, "where image-storage events come from: nats or kafka")
	c.NATS.AddFlags(fs)
	fs.StringVar(&c.NATSSubjectPrefix, "nats-subject-prefix", c.NATSSubjectPrefix, "subject prefix kubestream publishes with; events are read from <prefix>.imagestorage.>")
	fs.StringVar(&c.NATSStream, "nats-stream", c.NATSStream, "JetStream stream holding the events (default: the stream that captures <prefix>.imagestorage.>)")
	fs.StringVar(&c.NATSDurable, "nats-durable", c.NATSDurable, "durable consumer name: remembers what was acknowledged across restarts; a new one starts with each node's last event")
	fs.BoolVar(&c.NATSCore, "nats-core", c.NATSCore, "subscribe on core NATS instead of JetStream (for kubestream without --nats-stream): no acknowledgements, events sent while the bridge is down are lost to it")
	fs.DurationVar(&c.NATSAckWait, "nats-ack-wait", c.NATSAckWait, "how long JetStream waits for an ack before redelivering; extended while Alertmanager is retried")
	fs.StringVar(&c.KafkaTopicPrefix, "kafka-topic-prefix", c.KafkaTopicPrefix, "topic prefix kubestream publishes with; events are read from <prefix>.imagestorage")
	fs.StringVar(&c.KafkaTopic, "kafka-topic", c.KafkaTopic, "read this topic instead of <prefix>.imagestorage (when kubestream runs with --kafka-topic; other events in it are skipped)")
	fs.StringVar(&c.KafkaGroup, "kafka-group", c.KafkaGroup, "consumer group: remembers committed offsets across restarts")
	kafkasink.AddConnFlags(fs, &c.KafkaBrokers, &c.KafkaTLS, &c.KafkaSASL)
	fs.StringVar(&c.KafkaStartOffset, "kafka-start-offset", c.KafkaStartOffset, "where a group without committed offsets starts: first (the retained history, on a compacted topic each node's last event) or last")
	fs.StringSliceVar(&c.AlertmanagerURLs, "alertmanager-url", c.AlertmanagerURLs, "Alertmanager base URL, e.g. http://alertmanager:9093; repeat or comma-separate for every member of an HA cluster (required)")
	fs.StringVar(&c.BearerToken, "alertmanager-bearer-token", c.BearerToken, "bearer token for Alertmanager (prefer --alertmanager-bearer-token-file or KUBESTREAM_ALERTMANAGER_BEARER_TOKEN)")
	fs.StringVar(&c.BearerTokenFile, "alertmanager-bearer-token-file", c.BearerTokenFile, "file holding the bearer token for Alertmanager")
	fs.DurationVar(&c.AlertmanagerTimeout, "alertmanager-timeout", c.AlertmanagerTimeout, "time limit of one POST to Alertmanager")
	fs.DurationVar(&c.ResendInterval, "resend-interval", c.ResendInterval, "re-send firing alerts this often; keep it below Alertmanager's resolve_timeout and --alert-ttl")
	fs.DurationVar(&c.AlertTTL, "alert-ttl", c.AlertTTL, "endsAt of firing alerts, from each send: if the bridge stops for longer, its alerts end; keep it above kubestream's --resync so a restart is covered by the next replay")
	fs.StringToStringVar(&c.Labels, "alert-label", c.Labels, "extra label on every alert, name=value; repeatable (e.g. team=platform)")
	fs.StringVar(&c.GeneratorURL, "generator-url", c.GeneratorURL, "generatorURL of every alert: a link to where to look (a dashboard)")
	fs.IntVar(&c.MaxTrackedAlerts, "max-tracked-alerts", c.MaxTrackedAlerts, "most firing alerts kept for re-sending; past it, new alerts are sent but not re-sent")
	fs.StringVar(&c.ListenAddress, "listen-address", c.ListenAddress, "address of /metrics, /healthz and /readyz; empty disables")
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

var reservedLabels = map[string]bool{"alertname": true, "node": true, "cluster": true, "severity": true}

// Validate reports every problem, each with how to fix it.
func (c *Config) Validate() []error {
	var errs []error
	switch c.Source {
	case "nats":
		errs = append(errs, c.NATS.Validate()...)
		if err := natssink.ValidatePrefix(c.NATSSubjectPrefix); err != nil {
			errs = append(errs, fmt.Errorf("--nats-subject-prefix: %w", err))
		}
		if !c.NATSCore && (c.NATSDurable == "" || strings.ContainsAny(c.NATSDurable, " \t.*>/\\")) {
			errs = append(errs, fmt.Errorf("--nats-durable %q is not a consumer name: use letters, digits, '-' and '_' (default %s)", c.NATSDurable, DefaultConsumerName))
		}
		if c.NATSAckWait < time.Second {
			errs = append(errs, fmt.Errorf("--nats-ack-wait %s is too short: use at least 1s", c.NATSAckWait))
		}
	case "kafka":
		if len(c.KafkaBrokers) == 0 {
			errs = append(errs, errors.New("--kafka-brokers is required with --source kafka: give host:port of one or more brokers"))
		}
		if c.KafkaTopic == "" && c.KafkaTopicPrefix == "" {
			errs = append(errs, errors.New("--kafka-topic-prefix is empty: use the prefix kubestream publishes with (default kubestream)"))
		}
		if c.KafkaGroup == "" {
			errs = append(errs, errors.New("--kafka-group is empty: name the consumer group, e.g. "+DefaultConsumerName))
		}
		if c.KafkaStartOffset != "first" && c.KafkaStartOffset != "last" {
			errs = append(errs, fmt.Errorf("--kafka-start-offset %q is unknown: use first or last", c.KafkaStartOffset))
		}
		errs = append(errs, kafkasink.ValidateConn(c.KafkaBrokers, c.KafkaTLS, c.KafkaSASL)...)
	default:
		errs = append(errs, fmt.Errorf("--source %q is unknown: use nats or kafka", c.Source))
	}
	if len(c.AlertmanagerURLs) == 0 {
		errs = append(errs, errors.New("--alertmanager-url is required: give Alertmanager's base URL, e.g. http://alertmanager:9093"))
	}
	for _, raw := range c.AlertmanagerURLs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--alertmanager-url %q is not an http(s) URL: write it like http://alertmanager:9093 (the bridge adds /api/v2/alerts)", raw))
		}
	}
	if c.GeneratorURL != "" {
		if u, err := url.Parse(c.GeneratorURL); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("--generator-url %q is not an absolute URL", c.GeneratorURL))
		}
	}
	if c.BearerToken != "" && c.BearerTokenFile != "" {
		errs = append(errs, errors.New("--alertmanager-bearer-token and --alertmanager-bearer-token-file both set: use one"))
	}
	if c.AlertmanagerTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--alertmanager-timeout %s must be positive", c.AlertmanagerTimeout))
	}
	if c.ResendInterval <= 0 || c.AlertTTL <= 0 {
		errs = append(errs, errors.New("--resend-interval and --alert-ttl must be positive"))
	} else if c.AlertTTL < 2*c.ResendInterval {
		errs = append(errs, fmt.Errorf("--alert-ttl %s is less than twice --resend-interval %s: firing alerts would end between re-sends; raise --alert-ttl or lower --resend-interval", c.AlertTTL, c.ResendInterval))
	}
	names := make([]string, 0, len(c.Labels))
	for k := range c.Labels {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		switch {
		case !labelName.MatchString(k):
			errs = append(errs, fmt.Errorf("--alert-label %q: label names are letters, digits and '_', not starting with a digit", k))
		case reservedLabels[k]:
			errs = append(errs, fmt.Errorf("--alert-label %q: the bridge sets alertname, node, cluster and severity itself", k))
		case c.Labels[k] == "":
			errs = append(errs, fmt.Errorf("--alert-label %s has an empty value: Alertmanager drops empty labels, give a value", k))
		}
	}
	if c.ListenAddress != "" {
		if _, _, err := net.SplitHostPort(c.ListenAddress); err != nil {
			errs = append(errs, fmt.Errorf("--listen-address %q is not host:port (for example :8081), or empty to disable", c.ListenAddress))
		}
	}
	if c.MaxTrackedAlerts < 1 {
		errs = append(errs, fmt.Errorf("--max-tracked-alerts %d must be at least 1", c.MaxTrackedAlerts))
	}
	return errs
}

// NewClient returns the Alertmanager client (reading the token file).
func (c *Config) NewClient() (*Client, error) {
	token, err := config.Secret(c.BearerToken, c.BearerTokenFile, "Alertmanager bearer token")
	if err != nil {
		return nil, err
	}
	return &Client{URLs: c.AlertmanagerURLs, BearerToken: token, HTTP: &http.Client{Timeout: c.AlertmanagerTimeout}}, nil
}

// BridgeOptions returns the bridge's options.
func (c *Config) BridgeOptions() Options {
	return Options{ResendInterval: c.ResendInterval, AlertTTL: c.AlertTTL, ExtraLabels: c.Labels, GeneratorURL: c.GeneratorURL, MaxTracked: c.MaxTrackedAlerts}
}

// OpenSource connects to the broker. close releases the connection.
func (c *Config) OpenSource(ctx context.Context) (src Source, close func(), err error) {
	switch c.Source {
	case "nats":
		nc, err := c.NATS.Connect(ctx)
		if err != nil {
			return nil, nil, err
		}
		subject := Subject(c.NATSSubjectPrefix)
		if c.NATSCore {
			return &CoreNATSSource{Conn: nc, Subject: subject, Queue: c.NATSDurable}, nc.Close, nil
		}
		return &JetStreamSource{Conn: nc, Stream: c.NATSStream, Durable: c.NATSDurable, Subject: subject, AckWait: c.NATSAckWait}, nc.Close, nil
	case "kafka":
		topic := c.KafkaTopic
		if topic == "" {
			topic = Topic(c.KafkaTopicPrefix)
		}
		start := kafkago.FirstOffset
		if c.KafkaStartOffset == "last" {
			start = kafkago.LastOffset
		}
		dialer, err := kafkasink.NewDialer(10*time.Second, c.KafkaTLS, c.KafkaSASL)
		if err != nil {
			return nil, nil, err
		}
		return &KafkaSource{Brokers: c.KafkaBrokers, Topic: topic, Group: c.KafkaGroup, StartOffset: start, Dialer: dialer}, func() {}, nil
	}
	return nil, nil, fmt.Errorf("--source %q is unknown: use nats or kafka", c.Source)
}
