package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/resume"
)

// Defaults of the resume state.
const (
	// DefaultStateBucket is the key-value bucket of the resume state.
	DefaultStateBucket = "KUBESTREAM_STATE"
	// DefaultStateMarkerTTL is how long the marker of a removed entry stays.
	DefaultStateMarkerTTL = 15 * time.Minute
)

// ErrNoStateStore is returned by StateStore on core NATS: without JetStream
// nothing is stored, so there is no place for the resume state. It matches
// resume.ErrNoStore (errors.Is).
var ErrNoStateStore = fmt.Errorf("core NATS keeps no messages, so it has no place for the resume state (name a JetStream stream with --nats-stream to keep it in a key-value bucket): %w", resume.ErrNoStore)

// Header names and values of the key-value wire format (ADR-8), as nats.go's
// KeyValue.Purge writes them.
const (
	kvOperationHeader = "KV-Operation"
	kvPurge           = "PURGE"
	kvStreamPrefix    = "KV_"
	kvSubjectPrefix   = "$KV."
)

// validBucket applies JetStream's bucket name rule.
func validBucket(b string) error {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !safeByte(c) {
			return fmt.Errorf("--nats-state-bucket %q: bucket names may hold only letters, digits, '-' and '_'", b)
		}
	}
	return nil
}

// StateKey returns the key-value key of a store key of cluster:
// <cluster>.<part>.<part>..., the store key split at '/' (resource,
// namespace, name, and the uid when the tracker adds it), each part and the
// cluster escaped into one key token as subjects are (EscapeToken) but with
// '=' in place of '%', which keys do not allow: "prod.pods.default.web-0",
// "prod.configmaps.kube-system.kube-root-ca=2Ecrt", "prod.nodes.=.node-a"
// (an empty namespace is a lone '=').
func StateKey(cluster, key string) string {
	var b strings.Builder
	b.WriteString(kvToken(cluster))
	for _, part := range strings.Split(key, "/") {
		b.WriteByte('.')
		b.WriteString(kvToken(part))
	}
	return b.String()
}

// ParseStateKey returns the cluster and store key of a key-value key made by
// StateKey.
func ParseStateKey(kvKey string) (cluster, key string, err error) {
	toks := strings.Split(kvKey, ".")
	if len(toks) < 2 {
		return "", "", fmt.Errorf("state key %q has no store key after the cluster", kvKey)
	}
	parts := make([]string, len(toks))
	for i, tok := range toks {
		if parts[i], err = kvUntoken(tok); err != nil {
			return "", "", fmt.Errorf("state key %q: %w", kvKey, err)
		}
	}
	return parts[0], strings.Join(parts[1:], "/"), nil
}

// kvToken escapes s into one key token: EscapeToken's output uses '%' only
// for escapes, so trading it for '=' (itself escaped, as %3D) is one to one.
func kvToken(s string) string { return strings.ReplaceAll(EscapeToken(s), "%", "=") }

func kvUntoken(tok string) (string, error) {
	if strings.Contains(tok, "%") {
		return "", fmt.Errorf("key token %q holds '%%'", tok)
	}
	return UnescapeToken(strings.ReplaceAll(tok, "=", "%"))
}

// StateStore returns the resume state of cluster, kept in the JetStream
// key-value bucket Options.StateBucket (default KUBESTREAM_STATE), one key
// per store key (StateKey), value resume.Encode ({"v":1,"uid":...,"rv":...}).
// On core NATS it returns ErrNoStateStore.
//
// A missing bucket is created: history 1, file storage, the replicas of the
// events' stream, and (NATS 2.11+) per-message TTLs so that the marker a
// removal leaves expires after Options.StateMarkerTTL. On older servers, or
// on a bucket created without TTLs, the store purges its markers older than
// StateMarkerTTL itself, at most once per StateMarkerTTL, after a write. The
// bucket thus holds one message per live entry plus the removals of about
// the last StateMarkerTTL.
//
// Write publishes every put and removal (a purge, so no older revision
// stays) asynchronously and returns once all were acknowledged. Load reads
// the current value of every key of cluster with a watch (removals
// ignored) up to the end of the initial values. Several clusters share a
// bucket: each reads only its own first key token.
func (s *Sink) StateStore(ctx context.Context, cluster string) (resume.Store, error) {
	if s.js == nil {
		return nil, ErrNoStateStore
	}
	if cluster == "" {
		return nil, errors.New("NATS resume state: the cluster name is empty (set --cluster-name)")
	}
	kv, serverTTL, err := s.openStateBucket(ctx)
	if err != nil {
		return nil, err
	}
	bucket := kv.Bucket()
	st := &stateStore{
		sink:        s,
		kv:          kv,
		bucket:      bucket,
		stream:      kvStreamPrefix + bucket,
		subject:     kvSubjectPrefix + bucket + ".",
		cluster:     kvToken(cluster),
		clusterName: cluster,
		markerTTL:   s.stateMarkerTTL,
		serverTTL:   serverTTL,
		lastPurge:   time.Now(),
	}
	how := "server TTL"
	if !serverTTL {
		how = "purged by kubestream"
	}
	klog.FromContext(ctx).Info("Resume state in a JetStream key-value bucket", "bucket", bucket, "cluster", cluster,
		"keys", st.cluster+".>", "removalMarkers", how, "markerTTL", s.stateMarkerTTL.String())
	return st, nil
}

// openStateBucket looks the bucket up, creating it when missing, and reports
// whether its stream takes per-message TTLs.
func (s *Sink) openStateBucket(ctx context.Context) (jetstream.KeyValue, bool, error) {
	logger := klog.FromContext(ctx)
	name := s.stateBucket
	kv, err := s.js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		cfg := jetstream.KeyValueConfig{
			Bucket:         name,
			Description:    "kubestream resume state: the last acknowledged position of every object",
			History:        1,
			Storage:        jetstream.FileStorage,
			Replicas:       max(s.streamReplicas, 1),
			LimitMarkerTTL: s.stateMarkerTTL,
		}
		kv, err = s.js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
			// NATS before 2.11: no per-message TTLs; markers are purged.
			cfg.LimitMarkerTTL = 0
			kv, err = s.js.CreateKeyValue(ctx, cfg)
		}
		if errors.Is(err, jetstream.ErrBucketExists) {
			// Another replica created it meanwhile.
			kv, err = s.js.KeyValue(ctx, name)
		} else if err == nil {
			logger.Info("Created JetStream key-value bucket for the resume state", "bucket", name, "replicas", cfg.Replicas, "markerTTL", cfg.LimitMarkerTTL.String())
		}
		if err != nil {
			return nil, false, fmt.Errorf("create JetStream key-value bucket %s for the resume state (or name another with --nats-state-bucket, or run with --resume=false): %w", name, err)
		}
	} else if err != nil {
		return nil, false, fmt.Errorf("look up JetStream key-value bucket %s of the resume state: %w", name, err)
	}
	status, err := kv.Status(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("status of JetStream key-value bucket %s of the resume state: %w", name, err)
	}
	if h := status.History(); h > 1 {
		logger.Info("Warning: the resume state bucket keeps more than one revision per key; kubestream needs only the last", "bucket", name, "history", h)
	}
	ttl := false
	if bs, ok := status.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo() != nil {
		ttl = bs.StreamInfo().Config.AllowMsgTTL
	}
	return kv, ttl, nil
}

// stateStore is a resume.Store in a JetStream key-value bucket.
type stateStore struct {
	sink        *Sink
	kv          jetstream.KeyValue
	bucket      string
	stream      string // KV_<bucket>
	subject     string // $KV.<bucket>.
	cluster     string // the cluster's key token
	clusterName string
	markerTTL   time.Duration
	serverTTL   bool

	// mu serializes writes and purges, so batches land in order and a purge
	// never races a put of ours.
	mu        sync.Mutex
	lastPurge time.Time
}

// Write publishes removals (purges) and puts, and waits for every ack. A
// key both removed and put ends up put, as with resume.MemoryStore.
func (st *stateStore) Write(ctx context.Context, puts map[string]resume.Entry, deletes []string) error {
	if len(puts) == 0 && len(deletes) == 0 {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.sink
	fail := func(done int, err error) error {
		return fmt.Errorf("save %d positions and %d removals to JetStream bucket %s (%d acknowledged): %w", len(puts), len(deletes), st.bucket, done, err)
	}
	if !s.nc.IsConnected() {
		return fail(0, fmt.Errorf("%w (status %s)", ErrNotConnected, s.nc.Status()))
	}
	futures := make([]jetstream.PubAckFuture, 0, len(puts)+len(deletes))
	var pubErr error
	publish := func(m *nats.Msg, opts ...jetstream.PublishOpt) bool {
		opts = append(opts, jetstream.WithExpectStream(st.stream), jetstream.WithStallWait(s.ackTimeout))
		f, err := s.js.PublishMsgAsync(m, opts...)
		if err != nil {
			pubErr = fmt.Errorf("publish %s: %w", m.Subject, err)
			return false
		}
		futures = append(futures, f)
		return true
	}
	ok := true
	for _, k := range deletes {
		if _, put := puts[k]; put {
			continue
		}
		m := nats.NewMsg(st.subject + StateKey(st.clusterName, k))
		m.Header.Set(kvOperationHeader, kvPurge)
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		var opts []jetstream.PublishOpt
		if st.serverTTL {
			opts = append(opts, jetstream.WithMsgTTL(st.markerTTL))
		}
		if ok = publish(m, opts...); !ok {
			break
		}
	}
	if ok {
		for k, e := range puts {
			if !publish(&nats.Msg{Subject: st.subject + StateKey(st.clusterName, k), Data: resume.Encode(e)}) {
				break
			}
		}
	}
	acked := 0
	var ackErr error
	for _, f := range futures {
		select {
		case <-f.Ok():
			acked++
		case err := <-f.Err():
			if ackErr == nil {
				ackErr = fmt.Errorf("%s: %w", f.Msg().Subject, err)
			}
		case <-ctx.Done():
			return fail(acked, fmt.Errorf("waiting for acks: %w", ctx.Err()))
		}
	}
	if err := errors.Join(pubErr, ackErr); err != nil {
		return fail(acked, err)
	}
	if !st.serverTTL && time.Since(st.lastPurge) >= st.markerTTL {
		st.lastPurge = time.Now()
		if n, err := st.purgeMarkers(ctx); err != nil {
			klog.FromContext(ctx).Error(err, "Purging removal markers from the resume state bucket failed; trying again later", "bucket", st.bucket)
		} else if n > 0 {
			klog.FromContext(ctx).V(2).Info("Purged removal markers from the resume state bucket", "bucket", st.bucket, "markers", n)
		}
	}
	return nil
}

// purgeMarkers removes this cluster's removal markers older than markerTTL,
// each only up to its own revision, so a later put of the key stays.
func (st *stateStore) purgeMarkers(ctx context.Context) (int, error) {
	w, err := st.kv.WatchFiltered(ctx, []string{st.cluster + ".>"}, jetstream.MetaOnly())
	if err != nil {
		return 0, fmt.Errorf("watch bucket %s for removal markers: %w", st.bucket, err)
	}
	defer w.Stop()
	limit := time.Now().Add(-st.markerTTL)
	var old []jetstream.KeyValueEntry
	for done := false; !done; {
		select {
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return 0, fmt.Errorf("watch of bucket %s for removal markers ended early", st.bucket)
			case e == nil:
				done = true
			case (e.Operation() == jetstream.KeyValueDelete || e.Operation() == jetstream.KeyValuePurge) && e.Created().Before(limit):
				old = append(old, e)
			}
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	w.Stop()
	if len(old) == 0 {
		return 0, nil
	}
	stream, err := st.sink.js.Stream(ctx, st.stream)
	if err != nil {
		return 0, fmt.Errorf("look up stream %s: %w", st.stream, err)
	}
	for i, e := range old {
		if err := stream.Purge(ctx, jetstream.WithPurgeSubject(st.subject+e.Key()), jetstream.WithPurgeSequence(e.Revision()+1)); err != nil {
			return i, fmt.Errorf("purge %s: %w", e.Key(), err)
		}
	}
	return len(old), nil
}

// Load returns the current value of every key of this cluster.
func (st *stateStore) Load(ctx context.Context) (map[string]resume.Entry, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := st.kv.WatchFiltered(wctx, []string{st.cluster + ".>"}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("load resume state: watch JetStream bucket %s: %w", st.bucket, err)
	}
	defer w.Stop()
	out := map[string]resume.Entry{}
	undecodable := 0
	var firstBad error
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("load resume state: the watch of JetStream bucket %s ended after %d entries, before the last", st.bucket, len(out))
			}
			if e == nil {
				if undecodable > 0 {
					klog.FromContext(ctx).Info("Warning: skipped resume state entries that do not decode; those objects are sent again",
						"bucket", st.bucket, "entries", undecodable, "first", firstBad.Error())
				}
				return out, nil
			}
			_, key, err := ParseStateKey(e.Key())
			var entry resume.Entry
			if err == nil {
				entry, err = resume.Decode(e.Value())
			}
			if err != nil {
				undecodable++
				if firstBad == nil {
					firstBad = fmt.Errorf("key %s: %w", e.Key(), err)
				}
				continue
			}
			out[key] = entry
		case <-ctx.Done():
			return nil, fmt.Errorf("load resume state from JetStream bucket %s: %d entries read: %w", st.bucket, len(out), ctx.Err())
		}
	}
}

// Close does nothing: the connection is the sink's.
func (st *stateStore) Close() error { return nil }
