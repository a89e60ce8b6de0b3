package imagestorage_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubestream/kubestream/internal/controlplane"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/imagestorage"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/source"
)

const gi = int64(1) << 30

// group is one node change the source handed to the deriver and what the
// tracker derived from it.
type group struct {
	parent  *change.Change
	derived []*change.Change
}

// recordingDeriver passes node changes to the tracker and reports each
// change together with its derived changes, so a test can tell "nothing
// derived" from "not seen yet" without waiting for time to pass.
type recordingDeriver struct {
	tracker *imagestorage.Tracker
	groups  chan group
}

func (d *recordingDeriver) Derive(c *change.Change) []*change.Change {
	out := d.tracker.Derive(c)
	if c.Kind.Resource == kinds.Nodes.Resource {
		d.groups <- group{parent: c, derived: out}
	}
	return out
}

type discardQueue struct{}

func (discardQueue) Enqueue(*change.Change) bool { return true }

type imageSpec struct {
	name string
	size int64
}

func images(specs ...imageSpec) []corev1.ContainerImage {
	out := make([]corev1.ContainerImage, len(specs))
	for i, s := range specs {
		out[i] = corev1.ContainerImage{
			Names:     []string{fmt.Sprintf("registry.example/%s@sha256:%x", s.name, sha256.Sum256([]byte(s.name))), "registry.example/" + s.name + ":v1"},
			SizeBytes: s.size,
		}
	}
	return out
}

func TestImageStorageEventsFromARealAPIServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp, err := controlplane.Start(ctx, controlplane.Options{})
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	defer cp.Stop()
	client := kubernetes.NewForConfigOrDie(cp.RestConfig())
	nodes := client.CoreV1().Nodes()

	opts := imagestorage.DefaultOptions()
	opts.WarningBytes, opts.CriticalBytes = 10*gi, 20*gi
	opts.WarningShare, opts.CriticalShare = 0, 0
	if errs := opts.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	rec := &recordingDeriver{tracker: imagestorage.NewTracker(opts), groups: make(chan group, 64)}
	translator := &event.Translator{Cluster: "test", Instance: "it"}

	newNode := func(name string, imgs []corev1.ContainerImage) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		n.Status.Capacity = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("100Gi")}
		n.Status.Allocatable = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("90Gi")}
		n.Status.Images = imgs
		created, err := nodes.Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create node %s: %v", name, err)
		}
		if len(created.Status.Images) != len(imgs) {
			t.Fatalf("node %s lost its images on create", name)
		}
		return created
	}

	// A node that exists before kubestream starts: part of the initial list.
	w0 := newNode("worker-0", images(imageSpec{"big", 25 * gi}))

	src, err := source.New(source.Options{RestConfig: cp.RestConfig(), Kinds: []kinds.Kind{kinds.Nodes}, Queue: discardQueue{}, Derivers: []source.Deriver{rec}})
	if err != nil {
		t.Fatal(err)
	}
	srcDone := make(chan error, 1)
	synced := make(chan struct{})
	go func() { srcDone <- src.Run(ctx, func([]source.SyncStat) { close(synced) }) }()

	var lines []string
	// describe checks the change derived from one node change and returns its
	// image storage, or nil when nothing was derived.
	describe := func(step string, g group) *kubestreamv1.ImageStorage {
		t.Helper()
		p := g.parent.Subject()
		if len(g.derived) == 0 {
			lines = append(lines, fmt.Sprintf("%-22s (%s of %s: no image-storage event)", step, g.parent.Op, p.GetName()))
			return nil
		}
		if len(g.derived) != 1 {
			t.Fatalf("%s: %d derived changes", step, len(g.derived))
		}
		d := g.derived[0]
		if d.Op != g.parent.Op || d.Kind.Resource != kinds.Nodes.Resource || d.ReplayID != g.parent.ReplayID || !d.ObservedAt.Equal(g.parent.ObservedAt) {
			t.Fatalf("%s: derived change %+v does not mirror its parent %+v", step, d, g.parent)
		}
		ev, err := translator.Translate(d)
		if err != nil {
			t.Fatalf("%s: translate: %v", step, err)
		}
		if want := event.ID(string(p.GetUID()), p.GetResourceVersion(), d.Op, d.ReplayID, kinds.ImageStorage); ev.GetId() != want {
			t.Fatalf("%s: id %s, want %s", step, ev.GetId(), want)
		}
		lines = append(lines, fmt.Sprintf("%-22s %s", step, summarize(ev)))
		return ev.GetImageStorage()
	}
	// expect reads groups until the one for node name at resourceVersion rv
	// (any rv when empty) and returns what was derived from it. Every group
	// on the way must derive nothing.
	expect := func(step, name, rv string, op change.Op) *kubestreamv1.ImageStorage {
		t.Helper()
		for g := range rec.groups {
			p := g.parent.Subject()
			if p.GetName() != name || (rv != "" && p.GetResourceVersion() != rv) || g.parent.Op != op {
				if len(g.derived) > 0 {
					t.Fatalf("%s: unexpected image-storage event for %s %s rv %s: %v", step, g.parent.Op, p.GetName(), p.GetResourceVersion(), g.derived[0].ImageStorage)
				}
				continue
			}
			return describe(step, g)
		}
		t.Fatalf("%s: deriver stopped", step)
		return nil
	}
	patchStatus := func(name, patch string) string {
		t.Helper()
		n, err := nodes.Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
		if err != nil {
			t.Fatalf("patch status of %s: %v", name, err)
		}
		return n.ResourceVersion
	}
	setImages := func(name string, specs ...imageSpec) string {
		t.Helper()
		b, err := json.Marshal(map[string]any{"status": map[string]any{"images": images(specs...)}})
		if err != nil {
			t.Fatal(err)
		}
		return patchStatus(name, string(b))
	}
	type want struct {
		total, prev, delta int64
		added, removed     []string
		resized            []string
		sev, prevSev       kubestreamv1.Severity
		tr                 kubestreamv1.AlertTransition
		reason             string
	}
	check := func(step string, is *kubestreamv1.ImageStorage, w want) {
		t.Helper()
		if is == nil {
			t.Fatalf("%s: no image-storage event", step)
		}
		got := want{
			total: is.GetTotalBytes(), prev: is.GetPreviousTotalBytes(), delta: is.GetDeltaBytes(),
			added: firstTags(is.GetAdded()), removed: firstTags(is.GetRemoved()), resized: resizedTags(is.GetResized()),
			sev: is.GetSeverity(), prevSev: is.GetPreviousSeverity(), tr: is.GetTransition(), reason: w.reason,
		}
		if fmt.Sprint(got) != fmt.Sprint(w) || !strings.Contains(is.GetReason(), w.reason) {
			t.Fatalf("%s:\n got %+v reason %q\nwant %+v reason containing %q", step, got, is.GetReason(), w, w.reason)
		}
		if is.GetEphemeralStorageCapacityBytes() != 100*gi || is.GetEphemeralStorageAllocatableBytes() != 90*gi {
			t.Fatalf("%s: capacity %d allocatable %d", step, is.GetEphemeralStorageCapacityBytes(), is.GetEphemeralStorageAllocatableBytes())
		}
	}
	const (
		unspec   = kubestreamv1.Severity_SEVERITY_UNSPECIFIED
		ok       = kubestreamv1.Severity_SEVERITY_OK
		warning  = kubestreamv1.Severity_SEVERITY_WARNING
		critical = kubestreamv1.Severity_SEVERITY_CRITICAL
		none     = kubestreamv1.AlertTransition_ALERT_TRANSITION_NONE
		firing   = kubestreamv1.AlertTransition_ALERT_TRANSITION_FIRING
		resolved = kubestreamv1.AlertTransition_ALERT_TRANSITION_RESOLVED
		down     = kubestreamv1.AlertTransition_ALERT_TRANSITION_DOWNGRADED
	)

	is := expect("initial list", "worker-0", w0.ResourceVersion, change.Snapshot)
	if is == nil || is.GetTotalBytes() != 25*gi || is.GetSeverity() != critical || is.GetTransition() != firing || len(is.GetAdded()) != 0 {
		t.Fatalf("initial snapshot: %v", is)
	}

	select {
	case <-synced:
	case err := <-srcDone:
		t.Fatalf("source stopped before the initial list was synced: %v", err)
	}
	w1 := newNode("worker-1", images(imageSpec{"a", 4 * gi}, imageSpec{"b", 4 * gi}))
	check("create", expect("create", "worker-1", w1.ResourceVersion, change.Created),
		want{total: 8 * gi, delta: 8 * gi, added: []string{"a", "b"}, sev: ok, prevSev: unspec, tr: none, reason: "below thresholds"})

	rv := setImages("worker-1", imageSpec{"a", 4 * gi}, imageSpec{"b", 4 * gi}, imageSpec{"c", 3 * gi})
	check("grow past warning", expect("grow past warning", "worker-1", rv, change.Updated),
		want{total: 11 * gi, prev: 8 * gi, delta: 3 * gi, added: []string{"c"}, sev: warning, prevSev: ok, tr: firing, reason: "image bytes 11GiB >= warning 10GiB"})

	rv = patchStatus("worker-1", `{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","lastHeartbeatTime":"2030-01-01T00:00:00Z","lastTransitionTime":"2030-01-01T00:00:00Z"}]}}`)
	if expect("condition heartbeat", "worker-1", rv, change.Updated) != nil {
		t.Fatal("a heartbeat produced an image-storage event")
	}
	n, err := nodes.Patch(ctx, "worker-1", types.MergePatchType, []byte(`{"metadata":{"labels":{"pool":"blue"}}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if expect("label change", "worker-1", n.ResourceVersion, change.Updated) != nil {
		t.Fatal("a label change produced an image-storage event")
	}

	rv = setImages("worker-1", imageSpec{"a", 4 * gi}, imageSpec{"b", 4 * gi}, imageSpec{"c", 3 * gi}, imageSpec{"d", 10 * gi})
	check("grow past critical", expect("grow past critical", "worker-1", rv, change.Updated),
		want{total: 21 * gi, prev: 11 * gi, delta: 10 * gi, added: []string{"d"}, sev: critical, prevSev: warning, tr: firing, reason: ">= critical 20GiB"})

	rv = setImages("worker-1", imageSpec{"a", 4 * gi}, imageSpec{"b", 4 * gi}, imageSpec{"c", 3 * gi}, imageSpec{"d", 17 * gi / 2})
	check("hover under critical", expect("hover under critical", "worker-1", rv, change.Updated),
		want{total: 39 * gi / 2, prev: 21 * gi, delta: -3 * gi / 2, resized: []string{"d"}, sev: critical, prevSev: critical, tr: none, reason: "still critical: resolves below 19GiB"})

	// A replay round re-states the current severity without a transition.
	// It lists the cache in no particular order.
	src.Replay(ctx, kubestreamv1.ReplayReason_REPLAY_REASON_RESYNC)
	replayed := map[string]bool{}
	for len(replayed) < 2 {
		g := <-rec.groups
		name := g.parent.Subject().GetName()
		if g.parent.Op != change.Snapshot || replayed[name] {
			t.Fatalf("replay: got %s of %s", g.parent.Op, name)
		}
		replayed[name] = true
		is := describe("replay "+name, g)
		switch name {
		case "worker-0":
			if is.GetSeverity() != critical || is.GetPreviousSeverity() != critical || is.GetTransition() != none {
				t.Fatalf("replayed worker-0: %v", is)
			}
		case "worker-1":
			check("replay worker-1", is, want{total: 39 * gi / 2, delta: 39 * gi / 2, sev: critical, prevSev: critical, tr: none, reason: "still critical"})
		}
	}

	rv = setImages("worker-1", imageSpec{"a", 4 * gi}, imageSpec{"b", 4 * gi}, imageSpec{"c", 3 * gi})
	check("shrink under critical", expect("shrink under critical", "worker-1", rv, change.Updated),
		want{total: 11 * gi, prev: 39 * gi / 2, delta: -17 * gi / 2, removed: []string{"d"}, sev: warning, prevSev: critical, tr: down, reason: ">= warning 10GiB"})

	rv = setImages("worker-1", imageSpec{"a", 4 * gi}, imageSpec{"b", 4 * gi}, imageSpec{"e", 8 * gi / 5})
	check("hover under warning", expect("hover under warning", "worker-1", rv, change.Updated),
		want{total: 8*gi + 8*gi/5, prev: 11 * gi, delta: 8*gi/5 - 3*gi, added: []string{"e"}, removed: []string{"c"}, sev: warning, prevSev: warning, tr: none, reason: "still warning: resolves below 9.5GiB"})

	rv = setImages("worker-1", imageSpec{"a", 4 * gi}, imageSpec{"b", 4 * gi})
	check("shrink below margin", expect("shrink below margin", "worker-1", rv, change.Updated),
		want{total: 8 * gi, prev: 8*gi + 8*gi/5, delta: -8 * gi / 5, removed: []string{"e"}, sev: ok, prevSev: warning, tr: resolved, reason: "below thresholds"})

	if err := nodes.Delete(ctx, "worker-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The final state carries the deletion's resourceVersion.
	is = expect("delete", "worker-1", "", change.Deleted)
	if is == nil || !is.GetNodeDeleted() || is.GetTotalBytes() != 0 || is.GetPreviousTotalBytes() != 8*gi || is.GetSeverity() != ok || is.GetTransition() != none {
		t.Fatalf("delete: %v", is)
	}
	if got := rec.tracker.Nodes(); got != 1 {
		t.Fatalf("tracker holds %d nodes after worker-1 was deleted, want 1 (worker-0)", got)
	}
	cancel()
	go func() {
		for range rec.groups {
		}
	}()
	if err := <-srcDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("image-storage events:\n%s", strings.Join(lines, "\n"))
}

// summarize renders an event on one line for the test log.
func summarize(ev *kubestreamv1.Event) string {
	is := ev.GetImageStorage()
	var changes []string
	for _, i := range is.GetAdded() {
		changes = append(changes, "+"+tag(i.GetNames()))
	}
	for _, i := range is.GetRemoved() {
		changes = append(changes, "-"+tag(i.GetNames()))
	}
	for _, r := range is.GetResized() {
		changes = append(changes, "~"+tag(r.GetNames()))
	}
	return fmt.Sprintf("id=%s op=%s node=%s total=%s prev=%s delta=%s images=%d share=%.1f%% [%s] severity=%s prev=%s transition=%s deleted=%v reason=%q",
		ev.GetId()[:8], strings.TrimPrefix(ev.GetOperation().String(), "OPERATION_"), is.GetNode(),
		imagestorage.FormatBytes(is.GetTotalBytes()), imagestorage.FormatBytes(is.GetPreviousTotalBytes()), imagestorage.FormatBytes(is.GetDeltaBytes()),
		is.GetImageCount(), is.GetCapacityShare()*100, strings.Join(changes, " "),
		strings.TrimPrefix(is.GetSeverity().String(), "SEVERITY_"), strings.TrimPrefix(is.GetPreviousSeverity().String(), "SEVERITY_"),
		strings.TrimPrefix(is.GetTransition().String(), "ALERT_TRANSITION_"), is.GetNodeDeleted(), is.GetReason())
}

// tag returns the short name of an image: "a" for registry.example/a:v1.
func tag(names []string) string {
	for _, n := range names {
		if strings.HasSuffix(n, ":v1") {
			return strings.TrimSuffix(strings.TrimPrefix(n, "registry.example/"), ":v1")
		}
	}
	return strings.Join(names, "|")
}

func firstTags(imgs []*kubestreamv1.Image) []string {
	var out []string
	for _, i := range imgs {
		out = append(out, tag(i.GetNames()))
	}
	return out
}

func resizedTags(rs []*kubestreamv1.ImageResize) []string {
	var out []string
	for _, r := range rs {
		out = append(out, tag(r.GetNames()))
	}
	return out
}
