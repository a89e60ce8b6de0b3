package event

import (
	"fmt"
	"strconv"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
)

// heartbeat builds a kind's watermark event. The time is part of the id:
// heartbeats of an idle kind repeat the resourceVersion, and a broker's
// duplicate window must not drop them.
func (t *Translator) heartbeat(ev *kubestreamv1.Event, c *change.Change) (*kubestreamv1.Event, error) {
	if c.Heartbeat == nil {
		return nil, fmt.Errorf("heartbeat of %s without a watermark", c.Kind.Resource)
	}
	ev.Id = ID("", c.Heartbeat.GetResourceVersion(), c.Op, strconv.FormatInt(c.ObservedAt.UnixNano(), 10), change.HeartbeatKeyPrefix+c.Kind.Resource)
	ev.Payload = &kubestreamv1.Event_Heartbeat{Heartbeat: c.Heartbeat}
	return ev, nil
}
