package event_test

import (
	"math/rand"
	"testing"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// Creates, snapshots and deletes of cached pods decode only what the
// summary and the object reference read: the events must be those of the
// fully decoded pods, whatever the pod holds.
func TestTranslateOfPartlyDecodedPodsMatchesDecoded(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	f := filler(r)
	tr := &event.Translator{Cluster: "c", Instance: "i", ContentType: kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF}
	for i := 0; i < 300; i++ {
		pod := &corev1.Pod{}
		f.Fill(pod)
		pod.ManagedFields = nil // the cache drops them
		c := compact(t, pod)
		for _, op := range []change.Op{change.Created, change.Snapshot, change.Deleted} {
			fromCompact, fromDecoded := &change.Change{Kind: kinds.Pods, Op: op}, &change.Change{Kind: kinds.Pods, Op: op}
			if op == change.Deleted {
				fromCompact.Previous, fromDecoded.Previous = c, full(t, c)
			} else {
				fromCompact.Object, fromDecoded.Object = c, full(t, c)
			}
			a, err := tr.Translate(fromCompact)
			if err != nil {
				t.Fatal(err)
			}
			b, err := tr.Translate(fromDecoded)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(a, b) {
				t.Fatalf("pod %d %s: events differ:\n partly decoded %v\n decoded        %v", i, op, a, b)
			}
		}
	}
}
