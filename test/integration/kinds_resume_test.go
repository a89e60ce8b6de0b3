package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/app"
	"github.com/kubestream/kubestream/pkg/contract"
	"github.com/kubestream/kubestream/pkg/event"
)

// TestReplayRoundsCoverDynamicKinds: periodic (RESYNC) rounds cover the
// custom kinds a pattern picked, the one watched from the start and the
// one whose definition came while running, and snapshot their objects.
func TestReplayRoundsCoverDynamicKinds(t *testing.T) {
	ctx := context.Background()
	const group = "resync.example.com"
	levers := installCRD(t, group, "levers", "Lever", true)
	t.Cleanup(func() { deleteCRD(t, levers) })
	ns := createNamespace(t, client(t), "resync")
	d := dyn(t)
	l1 := must[*unstructured.Unstructured](t)(d.Resource(levers).Namespace(ns).Create(ctx, customResource(group+"/v1", "Lever", ns, "l1", map[string]any{"arm": int64(2)}), metav1.CreateOptions{}))

	s := startStream(t, app.Config{Selection: selection(t, "*."+group), Namespace: ns, Resync: 2 * time.Second})
	s.rec.waitFor(t, "initial round end", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END && ev.GetReplay().GetReason() == kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL
	})
	pulleys := installCRD(t, group, "pulleys", "Pulley", true)
	t.Cleanup(func() { deleteCRD(t, pulleys) })
	s.rec.waitFor(t, "the new kind's first round", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END && slices.Equal(ev.GetReplay().GetKinds(), []string{"pulleys." + group})
	})
	p1 := must[*unstructured.Unstructured](t)(d.Resource(pulleys).Namespace(ns).Create(ctx, customResource(group+"/v1", "Pulley", ns, "p1", map[string]any{"wheels": int64(3)}), metav1.CreateOptions{}))
	s.rec.waitFor(t, "p1 created", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_CREATED && ev.GetObject().GetUid() == string(p1.GetUID())
	})
	// The first RESYNC round that starts after p1's create.
	var created int
	for i, ev := range s.rec.snapshot() {
		if ev.GetOperation() == kubestreamv1.Operation_OPERATION_CREATED && ev.GetObject().GetUid() == string(p1.GetUID()) {
			created = i
		}
	}
	var beginAt int
	s.rec.waitFor(t, "a resync round after p1's create", func(ev *kubestreamv1.Event) bool {
		evs := s.rec.snapshot()
		for i := created + 1; i < len(evs); i++ {
			if evs[i].GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_BEGIN && evs[i].GetReplay().GetReason() == kubestreamv1.ReplayReason_REPLAY_REASON_RESYNC {
				beginAt = i
				id := evs[i].GetReplayId()
				return slices.ContainsFunc(evs[i:], func(e *kubestreamv1.Event) bool {
					return e.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END && e.GetReplayId() == id
				})
			}
		}
		return false
	})
	s.stop()
	evs := s.rec.snapshot()
	begin := evs[beginAt]
	id := begin.GetReplayId()
	var round []*kubestreamv1.Event
	var end *kubestreamv1.Event
	for _, ev := range evs[beginAt+1:] {
		if ev.GetReplayId() != id {
			continue
		}
		if ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END {
			end = ev
			break
		}
		round = append(round, ev)
	}
	t.Logf("stream:\n%s", describe(evs))
	wantKinds := []string{"levers." + group, "pulleys." + group}
	for _, m := range []*kubestreamv1.Event{begin, end} {
		got := slices.Clone(m.GetReplay().GetKinds())
		sort.Strings(got)
		if !slices.Equal(got, wantKinds) {
			t.Errorf("RESYNC %s covers %v, want %v (the kind watched from the start and the one added while running)", m.GetOperation(), got, wantKinds)
		}
	}
	if c := end.GetReplay().GetObjectCounts(); c["levers."+group] != 1 || c["pulleys."+group] != 1 {
		t.Errorf("RESYNC end counts %v, want one of each kind", c)
	}
	var snapped []string
	for _, ev := range round {
		if ev.GetOperation() != kubestreamv1.Operation_OPERATION_SNAPSHOT {
			t.Errorf("in the RESYNC round: %s, want snapshots only", line(ev))
			continue
		}
		snapped = append(snapped, ev.GetObject().GetUid())
		if ev.GetChange().GetContentType() != kubestreamv1.ContentType_CONTENT_TYPE_JSON {
			t.Errorf("snapshot %s: content type %s, want JSON", line(ev), ev.GetChange().GetContentType())
		}
		var obj map[string]any
		if err := json.Unmarshal(ev.GetChange().GetObject(), &obj); err != nil || obj["metadata"].(map[string]any)["uid"] != ev.GetObject().GetUid() {
			t.Errorf("snapshot %s: state is not the object's JSON: %v", line(ev), err)
		}
	}
	sort.Strings(snapped)
	want := []string{string(l1.GetUID()), string(p1.GetUID())}
	sort.Strings(want)
	if !slices.Equal(snapped, want) {
		t.Errorf("RESYNC round snapshots uids %v, want l1 and p1 %v", snapped, want)
	}
	judge := contract.New()
	for _, ev := range evs {
		judge.Apply(ev)
	}
	assertHolds(t, judge, l1, p1)
}

// TestResumeDynamicKinds: with --state-file, a restart sends the
// difference for custom resources: DELETED for one deleted while stopped,
// UPDATED for one changed, nothing for one unchanged; and a definition
// deleted while stopped (its kind covered by the pattern) gets DELETED for
// every saved object of its kind at the next start. The consumer contract,
// applied across both runs, ends with the apiserver's objects.
func TestResumeDynamicKinds(t *testing.T) {
	ctx := context.Background()
	const group = "resume.example.com"
	alphas := installCRD(t, group, "alphas", "Alpha", true)
	betas := installCRD(t, group, "betas", "Beta", true)
	t.Cleanup(func() { deleteCRD(t, alphas); deleteCRD(t, betas) })
	ns := createNamespace(t, client(t), "resume")
	d := dyn(t)
	mk := func(gvr schema.GroupVersionResource, kind, name string) *unstructured.Unstructured {
		return must[*unstructured.Unstructured](t)(d.Resource(gvr).Namespace(ns).Create(ctx, customResource(group+"/v1", kind, ns, name, map[string]any{"n": int64(1)}), metav1.CreateOptions{}))
	}
	a1, a2, a3 := mk(alphas, "Alpha", "a1"), mk(alphas, "Alpha", "a2"), mk(alphas, "Alpha", "a3")
	b1, b2 := mk(betas, "Beta", "b1"), mk(betas, "Beta", "b2")

	stateFile := filepath.Join(t.TempDir(), "state.json")
	cfg := app.Config{Selection: selection(t, "*."+group), Namespace: ns, Resume: true, StateFile: stateFile, StateFlushInterval: 50 * time.Millisecond}
	first := startStream(t, cfg)
	first.rec.waitFor(t, "initial round end", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END
	})
	first.stop()
	run1 := first.rec.snapshot()
	t.Logf("first run:\n%s", describe(run1))
	if saved, err := os.ReadFile(stateFile); err != nil {
		t.Fatalf("no state file after the first run: %v", err)
	} else {
		t.Logf("state file after the first run: %s", saved)
	}
	for _, u := range []*unstructured.Unstructured{a1, a2, a3, b1, b2} {
		if got := ops(eventsOfUID(run1, u.GetUID())); !slices.Equal(got, []string{"SNAPSHOT"}) {
			t.Errorf("first run, %s: %v, want [SNAPSHOT]", u.GetName(), got)
		}
	}

	// While stopped: a1 deleted, a2 changed, a3 untouched, and the betas'
	// definition deleted (with b1 and b2).
	if err := d.Resource(alphas).Namespace(ns).Delete(ctx, "a1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	a2.Object["spec"] = map[string]any{"n": int64(2)}
	a2 = must[*unstructured.Unstructured](t)(d.Resource(alphas).Namespace(ns).Update(ctx, a2, metav1.UpdateOptions{}))
	deleteCRD(t, betas)
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, err := d.Resource(crdGVR).Get(ctx, "betas."+group, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("betas definition still there after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	second := startStream(t, cfg)
	end := second.rec.waitFor(t, "the resume round's end", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END
	})
	// Deletes of a vanished kind may come after the round; give them time.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		evs := second.rec.snapshot()
		if len(eventsOfUID(evs, b1.GetUID())) > 0 && len(eventsOfUID(evs, b2.GetUID())) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	second.stop()
	run2 := second.rec.snapshot()
	t.Logf("second run:\n%s", describe(run2))

	if r := end.GetReplay(); r.GetReason() != kubestreamv1.ReplayReason_REPLAY_REASON_RESUME || !slices.Equal(r.GetKinds(), []string{"alphas." + group}) {
		t.Errorf("second run's first round: %s, want a RESUME round of alphas.%s", line(end), group)
	}
	if first := run2[0]; first.GetOperation() != kubestreamv1.Operation_OPERATION_REPLAY_BEGIN || first.GetReplay().GetReason() != kubestreamv1.ReplayReason_REPLAY_REASON_RESUME {
		t.Errorf("second run starts with %s, want the RESUME round's begin", line(first))
	}
	check := func(u *unstructured.Unstructured, want []string) []*kubestreamv1.Event {
		t.Helper()
		evs := eventsOfUID(run2, u.GetUID())
		if got := ops(evs); !slices.Equal(got, want) {
			t.Errorf("second run, %s (%s): %v, want %v", u.GetName(), u.GetUID(), got, want)
			return nil
		}
		return evs
	}
	if evs := check(a1, []string{"DELETED"}); evs != nil && !evs[0].GetChange().GetFinalStateUnknown() {
		t.Errorf("a1's DELETED is not flagged final_state_unknown: %s", line(evs[0]))
	}
	if evs := check(a2, []string{"UPDATED"}); evs != nil {
		if ev := evs[0]; ev.GetObject().GetResourceVersion() != a2.GetResourceVersion() || !ev.GetChange().GetPreviousUnknown() {
			t.Errorf("a2's UPDATED at rv %s (previous_unknown %v), want rv %s with previous_unknown", ev.GetObject().GetResourceVersion(), ev.GetChange().GetPreviousUnknown(), a2.GetResourceVersion())
		}
	}
	check(a3, nil)
	for _, b := range []*unstructured.Unstructured{b1, b2} {
		if evs := check(b, []string{"DELETED"}); evs != nil {
			o := evs[0].GetObject()
			if o.GetResource() != "betas."+group || o.GetNamespace() != ns || o.GetName() != b.GetName() || !evs[0].GetChange().GetFinalStateUnknown() {
				t.Errorf("%s's DELETED: %s ref %v, want betas.%s %s/%s flagged final_state_unknown", b.GetName(), line(evs[0]), o, group, ns, b.GetName())
			}
			// Consumers route by headers (docs/kafka.md, docs/nats.md): a
			// delete must carry its kind's group like every other event of
			// the kind, or a header filter on ks-group drops exactly the
			// deletes of a vanished kind.
			hs := map[string]string{}
			for _, h := range event.Headers(evs[0]) {
				hs[h.Key] = h.Value
			}
			t.Logf("%s's DELETED: ref %v, headers %v", b.GetName(), o, hs)
			if hs[event.HeaderKind] != "betas."+group || hs[event.HeaderGroup] != group {
				t.Errorf("the DELETED of %s, whose definition went while kubestream was stopped, has headers %v: ks-group, ks-version and ks-object-kind must name the kind (ObjectRef.group is %q)",
					b.GetName(), hs, o.GetGroup())
			}
		}
	}
	// Every event of the second run is about one of those four objects or a
	// marker: nothing else was sent.
	for _, ev := range run2 {
		if ev.GetReplay() == nil && !slices.Contains([]string{string(a1.GetUID()), string(a2.GetUID()), string(b1.GetUID()), string(b2.GetUID())}, ev.GetObject().GetUid()) {
			t.Errorf("second run sent %s, which did not change while stopped", line(ev))
		}
	}

	judge := contract.New()
	for _, ev := range append(slices.Clone(run1), run2...) {
		judge.Apply(ev)
	}
	assertHolds(t, judge, a2, a3)
	for _, u := range []*unstructured.Unstructured{a1, b1, b2} {
		if !judge.Deleted(string(u.GetUID())) {
			t.Errorf("the consumer saw no DELETED for %s", u.GetName())
		}
	}
	if o, ok := judge.Objects()[string(a2.GetUID())]; ok && o.ResourceVersion != a2.GetResourceVersion() {
		t.Errorf("the consumer holds a2 at rv %s, the apiserver at %s", o.ResourceVersion, a2.GetResourceVersion())
	}

	// The state file no longer holds the objects that went.
	saved, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []*unstructured.Unstructured{a1, b1, b2} {
		if strings.Contains(string(saved), string(u.GetUID())) {
			t.Errorf("the state file still holds %s (%s) after its DELETED was acknowledged: %s", u.GetName(), u.GetUID(), saved)
		}
	}
}

// assertHolds checks that the consumer holds exactly these objects (by uid)
// and that no replay end had to remove anything.
func assertHolds(t *testing.T, judge *contract.State, objs ...*unstructured.Unstructured) {
	t.Helper()
	var want, got []string
	for _, o := range objs {
		want = append(want, string(o.GetUID())+" "+o.GetName())
	}
	for uid, o := range judge.Objects() {
		got = append(got, uid+" "+o.Event.GetObject().GetName())
	}
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("the consumer holds %v, want the apiserver's %v", got, want)
	}
	if d := judge.Dropped(); len(d) > 0 {
		t.Errorf("replay ends removed %v: their DELETED never came", d)
	}
}

// TestCRDVersionSwitchKeepsObjects: a custom resource definition moves to
// a new version (v2 served and stored, v1 no longer served), as CRD
// upgrades do. The objects did not go anywhere: a consumer must not see a
// DELETED for them, and must end holding them.
func TestCRDVersionSwitchKeepsObjects(t *testing.T) {
	ctx := context.Background()
	const group = "upgrade.example.com"
	knobs := installCRD(t, group, "knobs", "Knob", true)
	t.Cleanup(func() { deleteCRD(t, knobs) })
	ns := createNamespace(t, client(t), "upgrade")
	d := dyn(t)
	k1 := must[*unstructured.Unstructured](t)(d.Resource(knobs).Namespace(ns).Create(ctx, customResource(group+"/v1", "Knob", ns, "k1", map[string]any{"turns": int64(1)}), metav1.CreateOptions{}))

	s := startStream(t, app.Config{Selection: selection(t, "*."+group), Namespace: ns})
	s.rec.waitFor(t, "initial round end", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END
	})

	crd := must[*unstructured.Unstructured](t)(d.Resource(crdGVR).Get(ctx, "knobs."+group, metav1.GetOptions{}))
	schema := map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
	crd.Object["spec"].(map[string]any)["versions"] = []any{
		map[string]any{"name": "v1", "served": false, "storage": false, "schema": schema, "subresources": map[string]any{"status": map[string]any{}}},
		map[string]any{"name": "v2", "served": true, "storage": true, "schema": schema, "subresources": map[string]any{"status": map[string]any{}}},
	}
	must[*unstructured.Unstructured](t)(d.Resource(crdGVR).Update(ctx, crd, metav1.UpdateOptions{}))
	v2 := schema2GVR(knobs, "v2")
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := d.Resource(v2).Namespace(ns).Get(ctx, "k1", metav1.GetOptions{}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("knobs not served at v2 after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A change at the new version: kubestream must stream it.
	k1 = must[*unstructured.Unstructured](t)(d.Resource(v2).Namespace(ns).Patch(ctx, "k1", types.MergePatchType, []byte(`{"spec":{"turns":2}}`), metav1.PatchOptions{}))
	s.rec.waitFor(t, "k1's change at v2", func(ev *kubestreamv1.Event) bool {
		return ev.GetObject().GetUid() == string(k1.GetUID()) && ev.GetObject().GetResourceVersion() == k1.GetResourceVersion()
	})
	time.Sleep(time.Second)
	evs := s.rec.snapshot()
	t.Logf("stream:\n%s", describe(evs))
	for _, ev := range eventsOfUID(evs, k1.GetUID()) {
		if ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED {
			t.Errorf("%s (final_state_unknown %v) for k1, which was never deleted: the definition only moved to v2", line(ev), ev.GetChange().GetFinalStateUnknown())
		}
	}
	judge := contract.New()
	for _, ev := range evs {
		judge.Apply(ev)
	}
	assertHolds(t, judge, k1)
	if o, ok := judge.Objects()[string(k1.GetUID())]; ok && o.ResourceVersion != k1.GetResourceVersion() {
		t.Errorf("the consumer holds k1 at rv %s, the apiserver at %s", o.ResourceVersion, k1.GetResourceVersion())
	}
}

func schema2GVR(gvr schema.GroupVersionResource, version string) schema.GroupVersionResource {
	gvr.Version = version
	return gvr
}

// TestPatternMatchingNothingAtRestart: the only kind a pattern covered had
// its definition deleted while kubestream was stopped (cert-manager
// uninstalled during a restart). The saved objects of that kind must still
// get their DELETED at the next start, as they do when other kinds remain
// (TestResumeDynamicKinds) and as they do when the definition goes while
// running (TestPatternPicksUpKindsWhileRunning).
func TestPatternMatchingNothingAtRestart(t *testing.T) {
	ctx := context.Background()
	const group = "lonely.example.com"
	solos := installCRD(t, group, "solos", "Solo", true)
	t.Cleanup(func() { deleteCRD(t, solos) })
	ns := createNamespace(t, client(t), "lonely")
	d := dyn(t)
	s1 := must[*unstructured.Unstructured](t)(d.Resource(solos).Namespace(ns).Create(ctx, customResource(group+"/v1", "Solo", ns, "s1", map[string]any{"n": int64(1)}), metav1.CreateOptions{}))

	stateFile := filepath.Join(t.TempDir(), "state.json")
	cfg := app.Config{Selection: selection(t, "*."+group), Namespace: ns, Resume: true, StateFile: stateFile, StateFlushInterval: 50 * time.Millisecond}
	first := startStream(t, cfg)
	first.rec.waitFor(t, "initial round end", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END
	})
	first.stop()
	run1 := first.rec.snapshot()

	deleteCRD(t, solos)
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, err := d.Resource(crdGVR).Get(ctx, "solos."+group, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("solos definition still there after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	second := startStream(t, cfg)
	deadline := time.Now().Add(10 * time.Second)
	var runErr error
	for time.Now().Before(deadline) && len(eventsOfUID(second.rec.snapshot(), s1.GetUID())) == 0 {
		select {
		case runErr = <-second.done:
			second.done <- runErr
			deadline = time.Now()
		case <-time.After(50 * time.Millisecond):
		}
	}
	run2 := second.rec.snapshot()
	second.stop()
	t.Logf("second run (error %v):\n%s", runErr, describe(run2))
	if runErr != nil {
		t.Errorf("the second start failed: %v; the saved object s1 (%s) of the vanished kind solos.%s never gets its DELETED", runErr, s1.GetUID(), group)
	}
	judge := contract.New()
	for _, ev := range append(slices.Clone(run1), run2...) {
		judge.Apply(ev)
	}
	if !judge.Deleted(string(s1.GetUID())) {
		t.Errorf("the consumer saw no DELETED for s1, deleted with its definition while kubestream was stopped")
	}
	assertHolds(t, judge)
}

// TestNamedKindVersionSwitch: a kind named in --kinds (no pattern, so no
// definition watch) whose definition moves to v2 with v1 no longer served.
// Its changes must keep arriving, or kubestream must say it cannot follow
// (exit, or /readyz unready); it must not go silent.
func TestNamedKindVersionSwitch(t *testing.T) {
	ctx := context.Background()
	const group = "named.example.com"
	dials := installCRD(t, group, "dials", "Dial", true)
	t.Cleanup(func() { deleteCRD(t, dials) })
	ns := createNamespace(t, client(t), "named")
	d := dyn(t)
	k1 := must[*unstructured.Unstructured](t)(d.Resource(dials).Namespace(ns).Create(ctx, customResource(group+"/v1", "Dial", ns, "d1", map[string]any{"turns": int64(1)}), metav1.CreateOptions{}))

	s := startStream(t, app.Config{Selection: selection(t, "dials."+group), Namespace: ns})
	s.rec.waitFor(t, "initial round end", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END
	})
	crd := must[*unstructured.Unstructured](t)(d.Resource(crdGVR).Get(ctx, "dials."+group, metav1.GetOptions{}))
	sch := map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
	crd.Object["spec"].(map[string]any)["versions"] = []any{
		map[string]any{"name": "v1", "served": false, "storage": false, "schema": sch},
		map[string]any{"name": "v2", "served": true, "storage": true, "schema": sch},
	}
	must[*unstructured.Unstructured](t)(d.Resource(crdGVR).Update(ctx, crd, metav1.UpdateOptions{}))
	v2 := schema2GVR(dials, "v2")
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := d.Resource(v2).Namespace(ns).Get(ctx, "d1", metav1.GetOptions{}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("dials not served at v2 after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	k1 = must[*unstructured.Unstructured](t)(d.Resource(v2).Namespace(ns).Patch(ctx, "d1", types.MergePatchType, []byte(`{"spec":{"turns":2}}`), metav1.PatchOptions{}))
	deadline := time.Now().Add(20 * time.Second)
	var runErr error
	arrived := false
	for !arrived && runErr == nil && time.Now().Before(deadline) {
		select {
		case runErr = <-s.done:
			s.done <- runErr
		case <-time.After(100 * time.Millisecond):
		}
		arrived = slices.ContainsFunc(s.rec.snapshot(), func(ev *kubestreamv1.Event) bool {
			return ev.GetObject().GetUid() == string(k1.GetUID()) && ev.GetObject().GetResourceVersion() == k1.GetResourceVersion()
		})
	}
	t.Logf("stream (run error %v):\n%s", runErr, describe(s.rec.snapshot()))
	if !arrived && runErr == nil {
		t.Errorf("20s after %s moved to v2, d1's change (rv %s) has not arrived: a kind named in --kinds must follow its definition to the served version",
			"dials."+group, k1.GetResourceVersion())
	}
}
