package event

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/kubestream/kubestream/pkg/change"
)

// ID derives an event's id from what identifies the change: the object's uid
// and resourceVersion, the operation, and for snapshots the replay round.
// The same change always gets the same id, so retries and redeliveries can be
// dropped by id. stream separates event streams derived from one object
// (image-storage events of a node) from the object's own events.
func ID(uid, resourceVersion string, op change.Op, replayID, stream string) string {
	h := sha256.New()
	for _, part := range []string{uid, resourceVersion, op.String(), replayID, stream} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:16])
}
