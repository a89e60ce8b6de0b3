package kafka

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubestream/kubestream/pkg/config"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// Defaults of Options. They are the values users get from the flags.
const (
	DefaultTopicPrefix       = "kubestream"
	DefaultPartitions        = 6
	DefaultReplicationFactor = -1 // the broker's default.replication.factor
	DefaultCleanupPolicy     = "delete"
	DefaultCompression       = "snappy"
	DefaultBatchSize         = 1000
	// DefaultBatchBytes stays below the broker default message.max.bytes
	// (1048588) with room for the record batch's own framing, so a full
	// batch is never rejected as a whole.
	DefaultBatchBytes   = 1000000
	DefaultBatchTimeout = 2 * time.Millisecond
	DefaultWriteTimeout = 10 * time.Second
	DefaultDialTimeout  = 5 * time.Second
	DefaultClientID     = "kubestream"
	// DefaultStateTopicSuffix follows the topic prefix in the default
	// resume state topic: kubestream.state.
	DefaultStateTopicSuffix = ".state"
)

// Options configure the Kafka sink. Zero values are not defaults: build
// Options with AddFlags or start from NewOptions.
type Options struct {
	// Brokers are the bootstrap addresses, host:port.
	Brokers []string

	// TopicPrefix names the per-kind topics: <prefix>.pods, <prefix>.nodes,
	// <prefix>.deployments, <prefix>.configmaps, <prefix>.imagestorage.
	TopicPrefix string
	// Topic, when set, puts every event into this one topic instead.
	Topic string

	// Streams names what will be published: resource names of the watched
	// kinds ("pods", "configmaps") and kinds.ImageStorage when image-storage
	// events are on. Open checks that the topic of every stream exists
	// (<prefix>.<stream>, or Topic): a missing one is created with
	// CreateTopics, else the broker is asked to create it automatically
	// (as a stock broker with auto.create.topics.enable does), else Open
	// fails with ErrMissingTopics. Empty skips the check: topics are then
	// looked up on first use. Not a flag: the command fills it in.
	Streams []string

	// CreateTopics creates missing topics, at Open and on first use, with
	// Partitions, ReplicationFactor, CleanupPolicy and TopicConfig. Without
	// it, missing topics are left to the broker's automatic topic creation.
	CreateTopics      bool
	Partitions        int
	ReplicationFactor int
	CleanupPolicy     string
	// TopicConfig are further topic settings for created topics, key=value
	// (retention.ms=604800000).
	TopicConfig []string

	// Tombstones writes a record with a null value and the object's key after
	// every delete, so a compacted topic forgets deleted objects.
	Tombstones bool

	// StateTopic is the compacted topic of the resume state (see
	// Sink.StateStore): one record per saved position, key
	// <cluster>/<store key>. Empty means <TopicPrefix>.state, also in
	// single-topic mode.
	StateTopic string

	// Compression codec: none, gzip, snappy, lz4 or zstd.
	Compression string
	// BatchSize is the most records per produce batch and partition.
	BatchSize int
	// BatchBytes is the most bytes (uncompressed) per produce batch and
	// partition; a single record larger than this is compressed on its own,
	// else trimmed (see Sink).
	BatchBytes int
	// BatchTimeout is how long a partial batch waits for more records.
	BatchTimeout time.Duration
	// WriteTimeout bounds one produce request.
	WriteTimeout time.Duration
	// DialTimeout bounds connecting (TCP, TLS and SASL) and the broker check
	// at Open.
	DialTimeout time.Duration
	ClientID    string

	TLS  TLSOptions
	SASL SASLOptions
}

// TLSOptions configure TLS to the brokers, spelled as for every bus
// (--kafka-tls-ca-file, ...). Any of them enables TLS.
type TLSOptions = config.TLS

// SASLOptions configure SASL authentication.
type SASLOptions struct {
	// Mechanism: "" (none), plain, scram-sha-256 or scram-sha-512.
	Mechanism string
	Username  string
	// Password or PasswordFile (one of them).
	Password     string
	PasswordFile string
}

// NewOptions returns Options with every default set.
func NewOptions() Options {
	return Options{
		TopicPrefix:       DefaultTopicPrefix,
		Partitions:        DefaultPartitions,
		ReplicationFactor: DefaultReplicationFactor,
		CleanupPolicy:     DefaultCleanupPolicy,
		Compression:       DefaultCompression,
		BatchSize:         DefaultBatchSize,
		BatchBytes:        DefaultBatchBytes,
		BatchTimeout:      DefaultBatchTimeout,
		WriteTimeout:      DefaultWriteTimeout,
		DialTimeout:       DefaultDialTimeout,
		ClientID:          DefaultClientID,
	}
}

// AddFlags registers the --kafka-* flags, bound to o, with o's current
// values as defaults. Every flag can also be set as KUBESTREAM_<FLAG> or in
// the config file (pkg/config).
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.TopicPrefix, "kafka-topic-prefix", o.TopicPrefix, "prefix of the per-kind topics: <prefix>.pods, .nodes, .deployments, .configmaps, .imagestorage")
	fs.StringVar(&o.Topic, "kafka-topic", o.Topic, "put every event into this one topic instead of one topic per kind")
	fs.BoolVar(&o.CreateTopics, "kafka-create-topics", o.CreateTopics, "create missing topics at start with --kafka-topic-partitions, --kafka-topic-replication-factor and --kafka-topic-cleanup-policy (without it, missing topics are left to the broker's automatic topic creation)")
	fs.IntVar(&o.Partitions, "kafka-topic-partitions", o.Partitions, "partitions of created topics")
	fs.IntVar(&o.ReplicationFactor, "kafka-topic-replication-factor", o.ReplicationFactor, "replication factor of created topics; -1 uses the broker's default.replication.factor")
	fs.StringVar(&o.CleanupPolicy, "kafka-topic-cleanup-policy", o.CleanupPolicy, "cleanup.policy of created topics: delete, compact or compact,delete (compact keeps the latest state per object)")
	fs.StringSliceVar(&o.TopicConfig, "kafka-topic-config", o.TopicConfig, "further settings of created topics, key=value, comma-separated (retention.ms=604800000)")
	fs.BoolVar(&o.Tombstones, "kafka-tombstones", o.Tombstones, "after each delete, also write a tombstone (same key, null value) so compacted topics forget the object")
	fs.StringVar(&o.StateTopic, "kafka-state-topic", o.StateTopic, "compacted topic holding the resume state (the last acknowledged position of every object); empty means <kafka-topic-prefix>.state, also with --kafka-topic. Created with cleanup.policy=compact by --kafka-create-topics")
	fs.StringVar(&o.Compression, "kafka-compression", o.Compression, "compression codec: none, gzip, snappy, lz4 or zstd")
	fs.IntVar(&o.BatchSize, "kafka-batch-size", o.BatchSize, "most records per produce batch and partition")
	fs.IntVar(&o.BatchBytes, "kafka-batch-bytes", o.BatchBytes, "most bytes per produce batch and partition, before compression; keep it below the topics' max.message.bytes. Larger single events are compressed alone, else trimmed")
	fs.DurationVar(&o.BatchTimeout, "kafka-batch-timeout", o.BatchTimeout, "how long the resume state writer lets a partial batch wait for more positions; events are sent as soon as a publish call has them (no linger)")
	fs.DurationVar(&o.WriteTimeout, "kafka-write-timeout", o.WriteTimeout, "time limit of one produce request")
	fs.DurationVar(&o.DialTimeout, "kafka-dial-timeout", o.DialTimeout, "time limit to connect to a broker, TLS and SASL included; also the start-up check")
	fs.StringVar(&o.ClientID, "kafka-client-id", o.ClientID, "client id sent to the brokers (quotas, logs)")
	AddConnFlags(fs, &o.Brokers, &o.TLS, &o.SASL)
}

// StateTopicName is the topic of the resume state: StateTopic, else
// <TopicPrefix>.state (also in single-topic mode).
func (o *Options) StateTopicName() string {
	if o.StateTopic != "" {
		return o.StateTopic
	}
	return o.TopicPrefix + DefaultStateTopicSuffix
}

var compressions = []string{"none", "gzip", "snappy", "lz4", "zstd"}

var saslMechanisms = []string{"plain", "scram-sha-256", "scram-sha-512"}

// Validate reports every problem of o, each saying what is wrong and how to
// fix it.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(o.Brokers) == 0 {
		bad("--kafka-brokers is required with --sink kafka: give the bootstrap brokers as host:port,host:port")
	}
	errs = append(errs, ValidateConn(o.Brokers, o.TLS, o.SASL)...)
	if o.Topic != "" {
		if err := validTopic(o.Topic); err != nil {
			bad("--kafka-topic: %v", err)
		}
	} else if err := validTopic(o.TopicPrefix + ".imagestorage"); err != nil {
		bad("--kafka-topic-prefix %q: %v", o.TopicPrefix, err)
	}
	if state := o.StateTopicName(); validTopic(state) != nil {
		if o.StateTopic != "" {
			bad("--kafka-state-topic: %v", validTopic(state))
		} else {
			bad("--kafka-topic-prefix %q: resume state topic: %v", o.TopicPrefix, validTopic(state))
		}
	} else if o.Topic != "" && state == o.Topic {
		bad("the resume state topic %s is also --kafka-topic: the state needs a compacted topic of its own, name one with --kafka-state-topic", state)
	} else if o.Topic == "" {
		for _, r := range append(kinds.Names(kinds.All()), kinds.ImageStorage) {
			if state == o.TopicPrefix+"."+r {
				bad("--kafka-state-topic %s is the events topic of %s: the state needs a compacted topic of its own", state, r)
			}
		}
	}
	if o.CreateTopics {
		if o.Partitions < 1 {
			bad("--kafka-topic-partitions must be at least 1, got %d", o.Partitions)
		}
		if o.ReplicationFactor == 0 || o.ReplicationFactor < -1 {
			bad("--kafka-topic-replication-factor must be -1 (broker default) or at least 1, got %d", o.ReplicationFactor)
		}
		switch o.CleanupPolicy {
		case "delete", "compact", "compact,delete", "delete,compact":
		default:
			bad("--kafka-topic-cleanup-policy %q is unknown: use delete, compact or compact,delete", o.CleanupPolicy)
		}
		for _, kv := range o.TopicConfig {
			if k, _, ok := strings.Cut(kv, "="); !ok || strings.TrimSpace(k) == "" {
				bad("--kafka-topic-config %q is not key=value (for example retention.ms=604800000)", kv)
			}
		}
	}
	if _, err := parseCompression(o.Compression); err != nil {
		errs = append(errs, err)
	}
	if o.BatchSize < 1 {
		bad("--kafka-batch-size must be at least 1, got %d", o.BatchSize)
	}
	if o.BatchBytes < 1024 {
		bad("--kafka-batch-bytes must be at least 1024, got %d", o.BatchBytes)
	}
	if o.BatchTimeout <= 0 {
		bad("--kafka-batch-timeout must be positive (for example 2ms), got %s", o.BatchTimeout)
	}
	if o.WriteTimeout <= 0 || o.DialTimeout <= 0 {
		bad("--kafka-write-timeout and --kafka-dial-timeout must be positive")
	}
	return errors.Join(errs...)
}

// ValidateSecurity checks TLS and SASL settings with messages that name the
// flags.
func ValidateSecurity(t TLSOptions, s SASLOptions) []error {
	errs := t.Validate("kafka")
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch strings.ToLower(s.Mechanism) {
	case "":
		if s.Username != "" || s.Password != "" || s.PasswordFile != "" {
			bad("SASL credentials given without --kafka-sasl-mechanism: set it to one of %s", strings.Join(saslMechanisms, ", "))
		}
	case "plain", "scram-sha-256", "scram-sha-512":
		if s.Username == "" {
			bad("--kafka-sasl-mechanism %s needs --kafka-sasl-username", s.Mechanism)
		}
		if s.Password == "" && s.PasswordFile == "" {
			bad("--kafka-sasl-mechanism %s needs a password: set KUBESTREAM_KAFKA_SASL_PASSWORD or --kafka-sasl-password-file", s.Mechanism)
		}
		if s.Password != "" && s.PasswordFile != "" {
			bad("the SASL password is given both directly and as --kafka-sasl-password-file: use one")
		}
	default:
		bad("--kafka-sasl-mechanism %q is unknown: use one of %s", s.Mechanism, strings.Join(saslMechanisms, ", "))
	}
	return errs
}

// ValidateConn checks the connection flags every command shares: brokers
// as host:port (whether they are required is the command's call), TLS and
// SASL.
func ValidateConn(brokers []string, t TLSOptions, s SASLOptions) []error {
	var errs []error
	for _, b := range brokers {
		if _, port, err := net.SplitHostPort(strings.TrimSpace(b)); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("--kafka-brokers: %q is not host:port (for example kafka-0.kafka:9092)", b))
		}
	}
	return append(errs, ValidateSecurity(t, s)...)
}

// AddConnFlags registers how to reach the brokers, the same for run, tail
// and alert-bridge: --kafka-brokers, --kafka-tls-* and --kafka-sasl-*.
func AddConnFlags(fs *pflag.FlagSet, brokers *[]string, t *TLSOptions, s *SASLOptions) {
	fs.StringSliceVar(brokers, "kafka-brokers", *brokers, "Kafka bootstrap brokers, host:port, comma-separated")
	AddSecurityFlags(fs, t, s)
}

// AddSecurityFlags registers the --kafka-tls-* and --kafka-sasl-* flags.
func AddSecurityFlags(fs *pflag.FlagSet, t *TLSOptions, s *SASLOptions) {
	t.AddFlags(fs, "kafka", "brokers")
	fs.StringVar(&s.Mechanism, "kafka-sasl-mechanism", s.Mechanism, "SASL mechanism: plain, scram-sha-256 or scram-sha-512 (empty: no SASL)")
	fs.StringVar(&s.Username, "kafka-sasl-username", s.Username, "SASL user name")
	fs.StringVar(&s.Password, "kafka-sasl-password", s.Password, "SASL password; prefer KUBESTREAM_KAFKA_SASL_PASSWORD or --kafka-sasl-password-file over the command line")
	fs.StringVar(&s.PasswordFile, "kafka-sasl-password-file", s.PasswordFile, "file holding the SASL password (a mounted Secret)")
}

// validTopic applies Kafka's topic name rules.
func validTopic(t string) error {
	if t == "" || t == "." || t == ".." {
		return fmt.Errorf("topic name %q is invalid", t)
	}
	if len(t) > 249 {
		return fmt.Errorf("topic name %q is longer than 249 characters", t)
	}
	for _, r := range t {
		if !(r == '.' || r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return fmt.Errorf("topic name %q may hold only letters, digits, '.', '_' and '-'", t)
		}
	}
	return nil
}
