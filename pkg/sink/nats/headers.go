package nats

import (
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
)

// Message headers: the same names and values as the Kafka sink's record
// headers, so a consumer can route and filter without decoding the body,
// whichever bus it reads.
const (
	// HeaderID is the event id; JetStream also gets it as Nats-Msg-Id.
	HeaderID = "ks-id"
	// HeaderOp is the operation: created, updated, deleted, snapshot,
	// replay_begin or replay_end.
	HeaderOp = "ks-op"
	// HeaderKind is the resource name ("pods") or "imagestorage"; on replay
	// markers the covered kinds, comma-separated.
	HeaderKind = "ks-kind"
	// HeaderNamespace is the object's namespace; absent for cluster-scoped
	// kinds and markers.
	HeaderNamespace = "ks-namespace"
	// HeaderCluster is Event.cluster.
	HeaderCluster = "ks-cluster"
	// HeaderReplayID is set on snapshots and replay markers.
	HeaderReplayID = "ks-replay-id"
	// HeaderSchema is the wire contract version of the body ("1").
	HeaderSchema = "ks-schema"
	// HeaderTruncated is "true" when object states were dropped to fit.
	HeaderTruncated = "ks-truncated"
	// HeaderContentType says how the body is encoded.
	HeaderContentType = "content-type"

	// ContentTypeProtobuf is the body encoding: a binary kubestream.v1.Event.
	ContentTypeProtobuf = "application/x-protobuf; messageType=kubestream.v1.Event"
)

// OpName returns the ks-op value of an operation.
func OpName(op kubestreamv1.Operation) string { return change.Op(op).String() }

// Headers returns the headers of an event's message. NATS header names are
// case-sensitive and kept as written: all lower case.
func Headers(ev *kubestreamv1.Event) nats.Header {
	h := make(nats.Header, 10)
	kind := Kind(ev)
	if r := ev.GetReplay(); r != nil {
		kind = strings.Join(r.GetKinds(), ",")
	}
	h.Set(HeaderID, ev.GetId())
	h.Set(HeaderOp, OpName(ev.GetOperation()))
	h.Set(HeaderKind, kind)
	h.Set(HeaderSchema, strconv.FormatUint(uint64(ev.GetSchemaVersion()), 10))
	h.Set(HeaderContentType, ContentTypeProtobuf)
	if ns := ev.GetObject().GetNamespace(); ns != "" {
		h.Set(HeaderNamespace, ns)
	}
	if c := ev.GetCluster(); c != "" {
		h.Set(HeaderCluster, c)
	}
	if r := ev.GetReplayId(); r != "" {
		h.Set(HeaderReplayID, r)
	}
	if ev.GetChange().GetTruncated() {
		h.Set(HeaderTruncated, "true")
	}
	h.Set(nats.MsgIdHdr, ev.GetId())
	return h
}
