package event

import (
	"google.golang.org/protobuf/proto"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// Trim returns an event that encodes to at most maxBytes, or nil when even
// the identity and summary do not fit. It drops, in order, the previous
// state, the changed paths and the new state, and sets truncated. ev itself
// is not modified.
func Trim(ev *kubestreamv1.Event, maxBytes int) *kubestreamv1.Event {
	if proto.Size(ev) <= maxBytes {
		return ev
	}
	oc := ev.GetChange()
	if oc == nil {
		return nil
	}
	out := proto.CloneOf(ev)
	toc := out.GetChange()
	toc.Truncated = true
	steps := []func(){
		func() { toc.Previous = nil },
		func() { toc.ChangedPaths = nil },
		func() { toc.Object = nil },
	}
	for _, step := range steps {
		step()
		if proto.Size(out) <= maxBytes {
			return out
		}
	}
	return nil
}
