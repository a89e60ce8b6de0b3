package event

import (
	"strconv"
	"strings"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// Message headers, the same on every bus (Kafka record headers, NATS message
// headers), so consumers route and filter without decoding the body.
const (
	// HeaderID is the event id (Event.id): deduplicate on it.
	HeaderID = "ks-id"
	// HeaderOp is the operation: created, updated, deleted, snapshot,
	// replay_begin, replay_end, heartbeat (and tombstone on Kafka
	// tombstones).
	HeaderOp = "ks-op"
	// HeaderKind is the resource name ("pods", "certificates.cert-manager.io",
	// "imagestorage"); on replay markers the covered kinds, comma-separated.
	HeaderKind = "ks-kind"
	// HeaderGroup, HeaderVersion and HeaderKubeKind are the object's API
	// group (absent for the core group), version and Kubernetes kind.
	HeaderGroup    = "ks-group"
	HeaderVersion  = "ks-version"
	HeaderKubeKind = "ks-object-kind"
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
	// HeaderContentType says how the body is encoded.
	HeaderContentType = "content-type"
)

// ContentTypeProtobuf is the body encoding of every message: a binary
// kubestream.v1.Event.
const ContentTypeProtobuf = "application/x-protobuf; messageType=kubestream.v1.Event"

// Header is one message header.
type Header struct{ Key, Value string }

// Headers returns the headers of ev's message, content type included.
func Headers(ev *kubestreamv1.Event) []Header {
	kind := Resource(ev)
	if r := ev.GetReplay(); r != nil {
		kind = strings.Join(r.GetKinds(), ",")
	}
	h := make([]Header, 0, 12)
	h = append(h,
		Header{HeaderID, ev.GetId()},
		Header{HeaderOp, OpName(ev.GetOperation())},
		Header{HeaderKind, kind},
		Header{HeaderSchema, strconv.FormatUint(uint64(ev.GetSchemaVersion()), 10)},
		Header{HeaderContentType, ContentTypeProtobuf},
	)
	if o := ev.GetObject(); o.GetKind() != "" && ev.GetReplay() == nil {
		if o.GetGroup() != "" {
			h = append(h, Header{HeaderGroup, o.GetGroup()})
		}
		h = append(h, Header{HeaderVersion, o.GetVersion()}, Header{HeaderKubeKind, o.GetKind()})
	}
	if ns := ev.GetObject().GetNamespace(); ns != "" {
		h = append(h, Header{HeaderNamespace, ns})
	}
	if c := ev.GetCluster(); c != "" {
		h = append(h, Header{HeaderCluster, c})
	}
	if r := ev.GetReplayId(); r != "" {
		h = append(h, Header{HeaderReplayID, r})
	}
	if ev.GetChange().GetTruncated() {
		h = append(h, Header{HeaderTruncated, "true"})
	}
	return h
}

// OpName is the lower-case name of an operation, as in ks-op.
func OpName(op kubestreamv1.Operation) string { return change.Op(op).String() }

// ReplayResource is what Resource returns for replay markers.
const ReplayResource = "replay"

// Resource is the resource name an event is about (ObjectRef.resource:
// "pods", "certificates.cert-manager.io"), "imagestorage" for image-storage
// events, "replay" for markers, and for heartbeats the kind they are of.
// Events written before ObjectRef.resource existed get it from their kind:
// the typed kinds' names, else the lower-case plural Kubernetes names
// resources by.
func Resource(ev *kubestreamv1.Event) string {
	switch {
	case ev.GetHeartbeat() != nil:
		return ev.GetHeartbeat().GetResource()
	case ev.GetReplay() != nil:
		return ReplayResource
	case ev.GetImageStorage() != nil:
		return kinds.ImageStorage
	}
	if r := ev.GetObject().GetResource(); r != "" {
		return r
	}
	if k, ok := kinds.ByKind(ev.GetObject().GetKind()); ok {
		return k.Resource
	}
	return strings.ToLower(ev.GetObject().GetKind()) + "s"
}
