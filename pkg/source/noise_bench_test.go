package source

import (
	"fmt"
	"testing"
	"time"

	"github.com/kubestream/kubestream/internal/testobj"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/noise"
)

type discardQueue struct{ n int }

func (q *discardQueue) Enqueue(*change.Change) bool { q.n++; return true }

func compactPod(t testing.TB, name, rv, image string) change.Object {
	c, err := change.Compacted(testobj.Pod("ns", name, "uid-"+name, rv, image))
	if err != nil {
		t.Fatal(err)
	}
	return c.(change.Object)
}

// BenchmarkHandlerPodUpdate is the handler's cost per pod update (cached
// compact, as pods are) without noise rules, with the default rules on a real
// change, and with the default rules on a resourceVersion-only bump.
func BenchmarkHandlerPodUpdate(b *testing.B) {
	prev := compactPod(b, "web", "10", "web:1")
	changed := compactPod(b, "web", "11", "web:2")
	bump := compactPod(b, "web", "11", "web:1")
	defaults, err := noise.New(noise.Defaults)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		ignore Ignorer
		next   change.Object
	}{{"no-rules", nil, changed}, {"defaults-changed", defaults, changed}, {"defaults-resourceVersion-only", defaults, bump}} {
		b.Run(bc.name, func(b *testing.B) {
			q := &discardQueue{}
			src := &Source{opts: Options{Queue: q, Now: time.Now, Ignore: bc.ignore}}
			w := &watchedKind{kind: kinds.Pods, emitted: map[string]change.Object{}, active: true}
			h := &handler{s: src, w: w}
			b.ReportAllocs()
			for b.Loop() {
				h.OnUpdate(prev, bc.next)
			}
		})
	}
}

// BenchmarkHeartbeatCheck is the cost of deciding that a kind's handler has
// caught up with its store, per heartbeat, for 10,000 pods.
func BenchmarkHeartbeatCheck(b *testing.B) {
	w := &watchedKind{kind: kinds.Pods, emitted: map[string]change.Object{}}
	var store []any
	for i := range 10000 {
		p := compactPod(b, fmt.Sprint("pod-", i), "5", "img")
		w.emitted[objectKey(p)] = p
		store = append(store, p)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !caughtUp(w, store) {
			b.Fatal("not caught up")
		}
	}
}
