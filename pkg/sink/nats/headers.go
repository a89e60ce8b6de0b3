package nats

import (
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
)

// Message headers, the same on the Kafka sink, so a consumer can route and
// filter without decoding the body.
const (
	// HeaderID is the event id (also sent as Nats-Msg-Id for JetStream's
	// duplicate detection).
	HeaderID = "ks-id"
	// HeaderOp is the operation: created, updated, deleted, snapshot,
	// replay_begin or replay_end.
	HeaderOp = "ks-op"
	// HeaderKind is the kind token: a resource name ("pods"), "imagestorage"
	// or "replay".
	HeaderKind = "ks-kind"
	// HeaderContentType says how the body is encoded.
	HeaderContentType = "content-type"
	// HeaderSchema is the wire contract version of the body ("1").
	HeaderSchema = "ks-schema"

	// ContentTypeProtobuf is the body encoding: a binary kubestream.v1.Event.
	ContentTypeProtobuf = "application/x-protobuf; messageType=kubestream.v1.Event"
)

// OpName returns the ks-op value of an operation.
func OpName(op kubestreamv1.Operation) string { return change.Op(op).String() }

// Headers returns the headers of an event's message.
func Headers(ev *kubestreamv1.Event) nats.Header {
	h := make(nats.Header, 6)
	h.Set(HeaderID, ev.GetId())
	h.Set(HeaderOp, OpName(ev.GetOperation()))
	h.Set(HeaderKind, Kind(ev))
	h.Set(HeaderContentType, ContentTypeProtobuf)
	h.Set(HeaderSchema, strconv.FormatUint(uint64(ev.GetSchemaVersion()), 10))
	h.Set(nats.MsgIdHdr, ev.GetId())
	return h
}
