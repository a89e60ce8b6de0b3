package event_test

import (
	"testing"
	"time"

	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// BenchmarkTranslate translates pod changes whose states are compact, as
// the informer cache keeps them.
func BenchmarkTranslate(b *testing.B) {
	pc, nc := annotatedPods(b)
	at := time.Unix(1_700_000_100, 0)
	tr := &event.Translator{Cluster: "prod", Instance: "ks-0"}
	for _, bc := range []struct {
		name string
		c    *change.Change
	}{
		{"update-annotation", &change.Change{Kind: kinds.Pods, Op: change.Updated, Object: nc, Previous: pc, ObservedAt: at}},
		{"create", &change.Change{Kind: kinds.Pods, Op: change.Created, Object: nc, ObservedAt: at}},
		{"delete", &change.Change{Kind: kinds.Pods, Op: change.Deleted, Previous: pc, ObservedAt: at}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tr.Translate(bc.c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkChangedPaths compares the reflection differ on decoded pods
// (decoding included, as Translate did) with the wire differ.
func BenchmarkChangedPaths(b *testing.B) {
	pcc, ncc := annotatedPods(b)
	b.Run("decoded", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p, err := change.Full(pcc)
			if err != nil {
				b.Fatal(err)
			}
			n, err := change.Full(ncc)
			if err != nil {
				b.Fatal(err)
			}
			event.ChangedPaths(p, n)
		}
	})
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := event.ChangedPathsWire(pcc, ncc); !ok {
				b.Fatal("declined")
			}
		}
	})
}

// annotatedPods are a realistic pod's cached states before and after an
// annotation was set.
func annotatedPods(b *testing.B) (prev, next *change.Compact) {
	p := realisticPod()
	n := p.DeepCopy()
	n.ResourceVersion = "1002"
	n.Annotations["kubectl.kubernetes.io/restartedAt"] = "2026-12-01T10:00:00Z"
	pc, err := change.Compacted(p)
	if err != nil {
		b.Fatal(err)
	}
	nc, err := change.Compacted(n)
	if err != nil {
		b.Fatal(err)
	}
	return pc.(*change.Compact), nc.(*change.Compact)
}
