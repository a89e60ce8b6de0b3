package nats

import (
	"github.com/nats-io/nats.go"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/event"
)

// Headers returns the headers of an event's message: event.Headers, plus
// Nats-Msg-Id = event id so JetStream drops duplicates. NATS header names
// are case-sensitive and kept as written: all lower case.
func Headers(ev *kubestreamv1.Event) nats.Header {
	hs := event.Headers(ev)
	h := make(nats.Header, len(hs)+1)
	for _, kv := range hs {
		h.Set(kv.Key, kv.Value)
	}
	h.Set(nats.MsgIdHdr, ev.GetId())
	return h
}
