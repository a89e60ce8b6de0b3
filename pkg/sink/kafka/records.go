package kafka

import (
	"fmt"
	"strconv"

	kafkago "github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// OpTombstone is the ks-op of tombstone records.
const OpTombstone = "tombstone"

// MarkerKeyPrefix starts the key of replay-marker copies: "replay/<partition>".
const MarkerKeyPrefix = "replay/"

// HeartbeatKeyPrefix starts the key of heartbeat copies:
// "heartbeat/<resource>/<partition>", so a compacted topic keeps the latest
// heartbeat of each kind on each partition.
const HeartbeatKeyPrefix = "heartbeat/"

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

// resourceOf is the kind an event is about, as a resource name ("pods",
// "certificates.cert-manager.io"); image-storage events have their own.
func resourceOf(ev *kubestreamv1.Event) (string, error) {
	r := event.Resource(ev)
	if r == "" || r == "s" {
		return "", fmt.Errorf("event %s names no kind", ev.GetId())
	}
	return r, nil
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

// headers builds the headers of a record: event.Headers, with the
// operation and content type replaced for tombstones (no value).
func headers(ev *kubestreamv1.Event, tombstone bool) []kafkago.Header {
	hs := event.Headers(ev)
	h := make([]kafkago.Header, 0, len(hs))
	for _, kv := range hs {
		switch {
		case tombstone && kv.Key == event.HeaderOp:
			kv.Value = OpTombstone
		case tombstone && kv.Key == event.HeaderContentType:
			continue
		}
		h = append(h, kafkago.Header{Key: kv.Key, Value: []byte(kv.Value)})
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
	msgs := []kafkago.Message{{Topic: topic, Key: key, Value: value, Headers: headers(ev, false)}}
	if s.opts.Tombstones && ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED {
		// Same key, so the same partition, right after the delete.
		msgs = append(msgs, kafkago.Message{Topic: topic, Key: key, Headers: headers(ev, true)})
	}
	return msgs, nil
}

// markerTopics are the topics a replay marker goes to: the topics of the
// kinds it covers, plus the image-storage topic when nodes are covered
// (image-storage snapshots are derived from nodes). That one is required
// when image storage is a stream (checked at Open) or, with no streams
// given, when topics are created; otherwise optional: it gets markers only
// if it exists, so disabling image storage needs no topic.
//
// A heartbeat goes to its kind's topic only: it says nothing about derived
// events.
func (s *Sink) markerTopics(ev *kubestreamv1.Event) (required, optional []string) {
	if s.opts.Topic != "" {
		return []string{s.opts.Topic}, nil
	}
	if hb := ev.GetHeartbeat(); hb != nil {
		return []string{s.topicFor(hb.GetResource())}, nil
	}
	seen := map[string]bool{}
	for _, k := range ev.GetReplay().GetKinds() {
		t := s.topicFor(k)
		if !seen[t] {
			seen[t] = true
			required = append(required, t)
		}
		if k == kinds.Nodes.Resource {
			is := s.topicFor(kinds.ImageStorage)
			switch {
			case seen[is]:
			case s.imageStorageRequired:
				seen[is] = true
				required = append(required, is)
			default:
				optional = append(optional, is)
			}
		}
	}
	return required, optional
}

// markerRecords builds one copy of a replay marker or heartbeat per
// partition of each topic, so every consumer, whichever partitions it reads,
// sees the round's begin and end and every kind's heartbeats, each after
// the events it follows on that partition. partitions maps topic to
// partition count.
func markerRecords(ev *kubestreamv1.Event, topics []string, partitions map[string]int) ([]kafkago.Message, error) {
	value, err := proto.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode replay marker %s: %w", ev.GetId(), err)
	}
	h := headers(ev, false)
	prefix := MarkerKeyPrefix
	if hb := ev.GetHeartbeat(); hb != nil {
		prefix = HeartbeatKeyPrefix + hb.GetResource() + "/"
	}
	var msgs []kafkago.Message
	for _, t := range topics {
		for p := 0; p < partitions[t]; p++ {
			msgs = append(msgs, kafkago.Message{
				Topic:      t,
				Key:        []byte(prefix + strconv.Itoa(p)),
				Value:      value,
				Headers:    h,
				WriterData: forcedPartition(p),
			})
		}
	}
	return msgs, nil
}
