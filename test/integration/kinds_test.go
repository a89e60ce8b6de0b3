package integration

import (
	"context"
	"encoding/json"
	"fmt"

	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/app"
	"github.com/kubestream/kubestream/pkg/contract"
	"github.com/kubestream/kubestream/pkg/discover"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/rbac"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func dyn(t *testing.T) dynamic.Interface {
	t.Helper()
	return dynamic.NewForConfigOrDie(cp.RestConfig())
}

// installCRD creates a custom resource definition with a status subresource
// and waits until its kind is served.
func installCRD(t *testing.T, group, plural, kind string, namespaced bool) schema.GroupVersionResource {
	t.Helper()
	ctx := context.Background()
	scope := "Cluster"
	if namespaced {
		scope = "Namespaced"
	}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": plural + "." + group},
		"spec": map[string]any{
			"group": group, "scope": scope,
			"names": map[string]any{"plural": plural, "singular": strings.ToLower(kind), "kind": kind, "listKind": kind + "List"},
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"subresources": map[string]any{"status": map[string]any{}},
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object", "x-kubernetes-preserve-unknown-fields": true,
				}},
			}},
		},
	}}
	if _, err := dyn(t).Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create CRD %s.%s: %v", plural, group, err)
	}
	gvr := schema.GroupVersionResource{Group: group, Version: "v1", Resource: plural}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := dyn(t).Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			return gvr
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRD %s.%s not served within 30s: %v", plural, group, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func deleteCRD(t *testing.T, gvr schema.GroupVersionResource) {
	t.Helper()
	err := dyn(t).Resource(crdGVR).Delete(context.Background(), gvr.Resource+"."+gvr.Group, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

func customResource(apiVersion, kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": map[string]any{"name": name}, "spec": spec}}
	if ns != "" {
		u.SetNamespace(ns)
	}
	return u
}

func selection(t *testing.T, kindList string) *discover.Selection {
	t.Helper()
	sel, err := discover.Parse(kindList, discover.DefaultExclude, discover.DefaultMetadataOnly)
	if err != nil {
		t.Fatal(err)
	}
	return &sel
}

func eventsOfUID(evs []*kubestreamv1.Event, uid types.UID) []*kubestreamv1.Event {
	var out []*kubestreamv1.Event
	for _, ev := range evs {
		if ev.GetObject().GetUid() == string(uid) && ev.GetReplay() == nil {
			out = append(out, ev)
		}
	}
	return out
}

// TestStreamOfCustomResources: a namespaced and a cluster-scoped custom
// resource, created, changed (spec, then status through its subresource)
// and deleted, named in --kinds by their qualified names.
func TestStreamOfCustomResources(t *testing.T) {
	ctx := context.Background()
	widgets := installCRD(t, "crd.example.com", "widgets", "Widget", true)
	gadgets := installCRD(t, "crd.example.com", "gadgets", "Gadget", false)
	t.Cleanup(func() { deleteCRD(t, widgets); deleteCRD(t, gadgets) })
	ns := createNamespace(t, client(t), "crd")
	d := dyn(t)
	pre := must[*unstructured.Unstructured](t)(d.Resource(widgets).Namespace(ns).Create(ctx, customResource("crd.example.com/v1", "Widget", ns, "w0", map[string]any{"size": int64(1)}), metav1.CreateOptions{}))

	s := startStream(t, app.Config{Selection: selection(t, "widgets.crd.example.com,gadget.crd.example.com"), Namespace: ns})
	end := s.rec.waitFor(t, "initial round end", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END
	})
	if got := end.GetReplay().GetKinds(); !slices.Equal(got, []string{"widgets.crd.example.com", "gadgets.crd.example.com"}) {
		t.Fatalf("initial round covers %v", got)
	}
	if c := end.GetReplay().GetObjectCounts(); c["widgets.crd.example.com"] != 1 || c["gadgets.crd.example.com"] != 0 {
		t.Fatalf("initial round counts %v", c)
	}

	w1 := must[*unstructured.Unstructured](t)(d.Resource(widgets).Namespace(ns).Create(ctx, customResource("crd.example.com/v1", "Widget", ns, "w1", map[string]any{"size": int64(3)}), metav1.CreateOptions{}))
	w1.Object["spec"] = map[string]any{"size": int64(5)}
	w1 = must[*unstructured.Unstructured](t)(d.Resource(widgets).Namespace(ns).Update(ctx, w1, metav1.UpdateOptions{}))
	status := fmt.Sprintf(`{"status":{"phase":"Running","observedGeneration":%d,"conditions":[{"type":"Ready","status":"True","reason":"Sized","message":"size 5","lastTransitionTime":"2026-12-01T10:00:00Z"}]}}`, w1.GetGeneration())
	must[*unstructured.Unstructured](t)(d.Resource(widgets).Namespace(ns).Patch(ctx, "w1", types.MergePatchType, []byte(status), metav1.PatchOptions{}, "status"))
	if err := d.Resource(widgets).Namespace(ns).Delete(ctx, "w1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	g1 := must[*unstructured.Unstructured](t)(d.Resource(gadgets).Create(ctx, customResource("crd.example.com/v1", "Gadget", "", "g1", map[string]any{"color": "blue"}), metav1.CreateOptions{}))
	if err := d.Resource(gadgets).Delete(ctx, "g1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.rec.waitFor(t, "g1 deleted", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED && ev.GetObject().GetUid() == string(g1.GetUID())
	})

	evs := s.rec.snapshot()
	t.Logf("stream:\n%s", describe(evs))
	if got := ops(eventsOfUID(evs, pre.GetUID())); !slices.Equal(got, []string{"SNAPSHOT"}) {
		t.Errorf("w0: %v, want [SNAPSHOT]", got)
	}
	w1evs := eventsOfUID(evs, w1.GetUID())
	if got := ops(w1evs); !slices.Equal(got, []string{"CREATED", "UPDATED", "UPDATED", "DELETED"}) {
		t.Fatalf("w1: %v, want created, updated (spec), updated (status), deleted", got)
	}
	for _, ev := range w1evs {
		o, ch := ev.GetObject(), ev.GetChange()
		if o.GetResource() != "widgets.crd.example.com" || o.GetGroup() != "crd.example.com" || o.GetVersion() != "v1" || o.GetKind() != "Widget" || o.GetNamespace() != ns {
			t.Errorf("%s: object ref %v", ev.GetOperation(), o)
		}
		if ch.GetContentType() != kubestreamv1.ContentType_CONTENT_TYPE_JSON || ch.GetTypeName() != "" {
			t.Errorf("%s: content type %s %q, want JSON", ev.GetOperation(), ch.GetContentType(), ch.GetTypeName())
		}
		state := ch.GetObject()
		if state == nil {
			state = ch.GetPrevious()
		}
		var obj map[string]any
		if err := json.Unmarshal(state, &obj); err != nil || obj["kind"] != "Widget" || obj["apiVersion"] != "crd.example.com/v1" {
			t.Errorf("%s: state %s is not the object's JSON (%v)", ev.GetOperation(), state, err)
		}
		if strings.Contains(string(state), "managedFields") {
			t.Errorf("%s: state keeps managedFields", ev.GetOperation())
		}
	}
	spec, stat := w1evs[1].GetChange(), w1evs[2].GetChange()
	if !slices.Contains(spec.GetChangedPaths(), "spec.size") || !slices.Contains(spec.GetChangedPaths(), "metadata.generation") {
		t.Errorf("spec update changed paths %v", spec.GetChangedPaths())
	}
	if !slices.Contains(stat.GetChangedPaths(), "status") && !slices.Contains(stat.GetChangedPaths(), "status.phase") {
		t.Errorf("status update changed paths %v", stat.GetChangedPaths())
	}
	gs := stat.GetGeneric()
	if gs == nil || gs.GetPhase() != "Running" || !gs.GetHasObservedGeneration() || gs.GetObservedGeneration() != w1.GetGeneration() || gs.GetGeneration() != w1.GetGeneration() ||
		len(gs.GetConditions()) != 1 || gs.GetConditions()[0].GetType() != "Ready" || gs.GetConditions()[0].GetStatus() != "True" || gs.GetConditions()[0].GetReason() != "Sized" ||
		gs.GetConditions()[0].GetLastTransitionTime().AsTime() != time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC) {
		t.Errorf("generic summary after the status update: %v", gs)
	}
	if spec.GetGeneric().GetContentHash() == "" || spec.GetGeneric().GetContentHash() == stat.GetGeneric().GetContentHash() ||
		w1evs[0].GetChange().GetGeneric().GetContentHash() == spec.GetGeneric().GetContentHash() {
		t.Errorf("content hashes do not follow the content: %v / %v / %v", w1evs[0].GetChange().GetGeneric(), spec.GetGeneric(), stat.GetGeneric())
	}
	if got := ops(eventsOfUID(evs, g1.GetUID())); !slices.Equal(got, []string{"CREATED", "DELETED"}) {
		t.Errorf("g1: %v", got)
	}
	if ref := eventsOfUID(evs, g1.GetUID())[0].GetObject(); ref.GetNamespace() != "" || ref.GetResource() != "gadgets.crd.example.com" {
		t.Errorf("cluster-scoped g1 ref %v", ref)
	}
}

// TestPatternPicksUpKindsWhileRunning: a --kinds pattern watches a kind
// whose definition is created after start (its own first round, then live
// changes), and reports its objects deleted when the definition goes.
func TestPatternPicksUpKindsWhileRunning(t *testing.T) {
	ctx := context.Background()
	cs := client(t)
	ns := createNamespace(t, cs, "live")
	s := startStream(t, app.Config{Selection: selection(t, "*.live.example.com,configmaps"), Namespace: ns})
	first := s.rec.waitFor(t, "initial round end", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END
	})
	if got := first.GetReplay().GetKinds(); !slices.Equal(got, []string{"configmaps"}) {
		t.Fatalf("initial round covers %v, want configmaps only (no live.example.com kind yet)", got)
	}

	sprockets := installCRD(t, "live.example.com", "sprockets", "Sprocket", true)
	t.Cleanup(func() { deleteCRD(t, sprockets) })
	s.rec.waitFor(t, "the new kind's first round", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END && slices.Equal(ev.GetReplay().GetKinds(), []string{"sprockets.live.example.com"})
	})
	d := dyn(t)
	s1 := must[*unstructured.Unstructured](t)(d.Resource(sprockets).Namespace(ns).Create(ctx, customResource("live.example.com/v1", "Sprocket", ns, "s1", map[string]any{"teeth": int64(12)}), metav1.CreateOptions{}))
	s.rec.waitFor(t, "s1 created", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_CREATED && ev.GetObject().GetUid() == string(s1.GetUID())
	})
	deleteCRD(t, sprockets)
	s.rec.waitFor(t, "s1 deleted with its definition", func(ev *kubestreamv1.Event) bool {
		return ev.GetOperation() == kubestreamv1.Operation_OPERATION_DELETED && ev.GetObject().GetUid() == string(s1.GetUID())
	})
	cm := must[*corev1.ConfigMap](t)(cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after"}}, metav1.CreateOptions{}))
	s.rec.waitFor(t, "a config map after the kind went", isOp(kubestreamv1.Operation_OPERATION_CREATED, "ConfigMap", ns, "after", cm.ResourceVersion))

	evs := s.rec.snapshot()
	t.Logf("stream:\n%s", describe(evs))
	judge := contract.New()
	for _, ev := range evs {
		judge.Apply(ev)
	}
	if !judge.Deleted(string(s1.GetUID())) {
		t.Error("the consumer saw no DELETED for s1")
	}
	for _, o := range judge.Objects() {
		if strings.HasPrefix(o.Key, "sprockets.") {
			t.Errorf("the consumer still holds %s", o.Key)
		}
	}
	if got := ops(eventsOfUID(evs, s1.GetUID())); !slices.Equal(got, []string{"CREATED", "DELETED"}) {
		t.Errorf("s1: %v", got)
	}
}

// TestKindWithoutPermissionFailsAtStart: an identity that may not list a
// named kind is told which kind and how to fix it, before anything is
// published.
func TestKindWithoutPermissionFailsAtStart(t *testing.T) {
	ctx := context.Background()
	widgets := installCRD(t, "perm.example.com", "widgets", "Widget", true)
	t.Cleanup(func() { deleteCRD(t, widgets) })
	cs := client(t)
	ns := createNamespace(t, cs, "perm")
	must[*corev1.ServiceAccount](t)(cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader"}}, metav1.CreateOptions{}))
	role := rbac.ClusterRole("perm-reader-"+ns, mustKinds(t, "configmaps"), false)
	must[*rbacv1.ClusterRole](t)(cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}))
	t.Cleanup(func() { _ = cs.RbacV1().ClusterRoles().Delete(ctx, role.Name, metav1.DeleteOptions{}) })
	must[*rbacv1.ClusterRoleBinding](t)(cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "reader", Namespace: ns}},
	}, metav1.CreateOptions{}))
	t.Cleanup(func() { _ = cs.RbacV1().ClusterRoleBindings().Delete(ctx, role.Name, metav1.DeleteOptions{}) })
	tok := must[*authnv1.TokenRequest](t)(cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "reader", &authnv1.TokenRequest{}, metav1.CreateOptions{}))

	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: cp.URL, InsecureSkipTLSVerify: true}
	kc.AuthInfos["reader"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "reader"}
	kc.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	err := app.Run(ctx, app.Config{Kubeconfig: path, ClusterName: "it", Instance: "test", Selection: selection(t, "configmaps,widgets.perm.example.com")},
		func(context.Context, []string) (app.Sink, error) { return rec, nil })
	want := "not allowed to list widgets.perm.example.com: grant get, list and watch on widgets.perm.example.com (kubestream rbac --kinds widgets.perm.example.com prints the ClusterRole)"
	if err == nil || !app.IsBadInput(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("start as an identity without list on widgets: %v\nwant a bad-input error containing %q", err, want)
	}
	if len(rec.snapshot()) != 0 {
		t.Fatalf("events published before the check: %s", describe(rec.snapshot()))
	}
}

func mustKinds(t *testing.T, kindList string) []kinds.Kind {
	t.Helper()
	idx, err := discover.Discover(client(t).Discovery())
	if err != nil {
		t.Fatal(err)
	}
	ks, err := idx.Resolve(*selection(t, kindList))
	if err != nil {
		t.Fatal(err)
	}
	return ks
}
