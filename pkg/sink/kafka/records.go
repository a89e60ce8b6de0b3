package kafka

import (
	"fmt"
	"strconv"

	kafkago "github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// Record headers. Consumers route and filter on them without decoding the
// value.
const (
	// HeaderID is the event id (Event.id): deduplicate on it.
	HeaderID = "ks-id"
	// HeaderOp is the operation: created, updated, deleted, snapshot,
	// replay_begin, replay_end, or tombstone.
	HeaderOp = "ks-op"
	// HeaderKind is the lower-case plural kind ("pods", "imagestorage");
	// on replay markers the covered kinds, comma-separated.
	HeaderKind = "ks-kind"
	// HeaderNamespace is the object's namespace; absent for cluster-scoped
	// kinds and markers.
	HeaderNamespace = "ks-namespace"
	// HeaderCluster is Event.cluster.
	HeaderCluster = "ks-cluster"
	// HeaderReplayID is set on snapshots and replay markers.
	HeaderReplayID = "ks-replay-id"
	// HeaderSchema is the wire contract version (Event.schema_version).
	HeaderSchema = "ks-schema"
	// HeaderTruncated is "true" when object states were dropped to fit.
	HeaderTruncated = "ks-truncated"
	// HeaderContentType says how the value is encoded.
	HeaderContentType = "content-type"
)

// ContentType is the content-type header of every record with a value.
const ContentType = "application/x-protobuf; messageType=kubestream.v1.Event"

// OpTombstone is the ks-op of tombstone records.
const OpTombstone = "tombstone"

// MarkerKeyPrefix starts the key of replay-marker copies: "replay/<partition>".
const MarkerKeyPrefix = "replay/"

// forcedPartition rides in Message.WriterData to make the balancer put a
// replay-marker copy on one given partition.
type forcedPartition int

// balancer hashes keys with murmur2, the Java client's and librdkafka's
// default partitioner, so other producers and co-partitioned consumers
// (Kafka Streams joins) agree on where an object's key lives. Marker copies
// go to the partition they name.
type balancer struct{ murmur kafkago.Murmur2Balancer }

func (b *balancer) Balance(msg kafkago.Message, partitions ...int) int {
	if p, ok := msg.WriterData.(forcedPartition); ok {
		return partitions[int(p)%len(partitions)]
	}
	return b.murmur.Balance(msg, partitions...)
}

// resourceOf is the kind an event is about, as a resource name; image-storage
// events have their own.
func resourceOf(ev *kubestreamv1.Event) (string, error) {
	if ev.GetImageStorage() != nil {
		return kinds.ImageStorage, nil
	}
	k, ok := kinds.ByKind(ev.GetObject().GetKind())
	if !ok {
		return "", fmt.Errorf("event %s is about unknown kind %q", ev.GetId(), ev.GetObject().GetKind())
	}
	return k.Resource, nil
}

// Key returns the record key of an object's events: "<resource>/<namespace>/<name>",
// or "<resource>/<name>" for cluster-scoped kinds ("pods/default/web-0",
// "nodes/node-1", "imagestorage/node-1"). It is the object's name, not its
// uid, for the reasons in docs/kafka.md: the events of a deleted object and
// of its re-creation under the same name share a partition and stay in
// order, and a compacted topic keeps one record per name.
func Key(resource, namespace, name string) []byte {
	if namespace == "" {
		return []byte(resource + "/" + name)
	}
	return []byte(resource + "/" + namespace + "/" + name)
}

func opName(op kubestreamv1.Operation) string { return change.Op(op).String() }

// headers builds the headers of an event's record.
func headers(ev *kubestreamv1.Event, kind, op string) []kafkago.Header {
	h := make([]kafkago.Header, 0, 9)
	h = append(h,
		kafkago.Header{Key: HeaderID, Value: []byte(ev.GetId())},
		kafkago.Header{Key: HeaderOp, Value: []byte(op)},
		kafkago.Header{Key: HeaderKind, Value: []byte(kind)},
		kafkago.Header{Key: HeaderSchema, Value: []byte(strconv.FormatUint(uint64(ev.GetSchemaVersion()), 10))},
	)
	if ns := ev.GetObject().GetNamespace(); ns != "" {
		h = append(h, kafkago.Header{Key: HeaderNamespace, Value: []byte(ns)})
	}
	if c := ev.GetCluster(); c != "" {
		h = append(h, kafkago.Header{Key: HeaderCluster, Value: []byte(c)})
	}
	if r := ev.GetReplayId(); r != "" {
		h = append(h, kafkago.Header{Key: HeaderReplayID, Value: []byte(r)})
	}
	if ev.GetChange().GetTruncated() {
		h = append(h, kafkago.Header{Key: HeaderTruncated, Value: []byte("true")})
	}
	return h
}

// objectRecords builds the record of an object event, followed by its
// tombstone when wanted.
func (s *Sink) objectRecords(ev *kubestreamv1.Event) ([]kafkago.Message, error) {
	resource, err := resourceOf(ev)
	if err != nil {
		return nil, err
	}
	value, err := proto.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", ev.GetId(), err)
	}
	topic := s.topicFor(resource)
	key := Key(resource, ev.GetObject().GetNamespace(), ev.GetObject().GetName())
	h := append(headers(ev, resource, opName(ev.GetOperation())), kafkago.Header{Key: HeaderContentType, Value: []byte(ContentType)})
	msgs := []kafkago.Message{{Topic: topic, Key: key, Value: value, Headers: h}}
	if s.opts.Tombstones && ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED {
		// Same key, so the same partition, right after the delete.
		msgs = append(msgs, kafkago.Message{Topic: topic, Key: key, Headers: headers(ev, resource, OpTombstone)})
	}
	return msgs, nil
}

// markerTopics are the topics a replay marker goes to: the topics of the
// kinds it covers, plus the image-storage topic when nodes are covered
// (image-storage snapshots are derived from nodes).
func (s *Sink) markerTopics(m *kubestreamv1.ReplayMarker) (required, optional []string) {
	if s.opts.Topic != "" {
		return []string{s.opts.Topic}, nil
	}
	seen := map[string]bool{}
	for _, k := range m.GetKinds() {
		t := s.topicFor(k)
		if !seen[t] {
			seen[t] = true
			required = append(required, t)
		}
		if k == kinds.Nodes.Resource {
			optional = append(optional, s.topicFor(kinds.ImageStorage))
		}
	}
	return required, optional
}

// markerRecords builds one copy of a replay marker per partition of each
// topic, so every consumer, whichever partitions it reads, sees the round's
// begin and end. partitions maps topic to partition count.
func markerRecords(ev *kubestreamv1.Event, topics []string, partitions map[string]int) ([]kafkago.Message, error) {
	value, err := proto.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode replay marker %s: %w", ev.GetId(), err)
	}
	kindsHeader := ""
	for i, k := range ev.GetReplay().GetKinds() {
		if i > 0 {
			kindsHeader += ","
		}
		kindsHeader += k
	}
	h := append(headers(ev, kindsHeader, opName(ev.GetOperation())), kafkago.Header{Key: HeaderContentType, Value: []byte(ContentType)})
	var msgs []kafkago.Message
	for _, t := range topics {
		for p := 0; p < partitions[t]; p++ {
			msgs = append(msgs, kafkago.Message{
				Topic:      t,
				Key:        []byte(MarkerKeyPrefix + strconv.Itoa(p)),
				Value:      value,
				Headers:    h,
				WriterData: forcedPartition(p),
			})
		}
	}
	return msgs, nil
}
