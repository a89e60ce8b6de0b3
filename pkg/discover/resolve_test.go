package discover_test

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubestream/kubestream/pkg/discover"
	"github.com/kubestream/kubestream/pkg/kinds"
)

var rw = []string{"get", "list", "watch", "create", "update", "patch", "delete"}

func group(name string, versions ...string) *metav1.APIGroup {
	g := &metav1.APIGroup{Name: name, PreferredVersion: metav1.GroupVersionForDiscovery{Version: versions[0]}}
	for _, v := range versions {
		g.Versions = append(g.Versions, metav1.GroupVersionForDiscovery{Version: v})
	}
	return g
}

func list(gv string, rs ...metav1.APIResource) *metav1.APIResourceList {
	return &metav1.APIResourceList{GroupVersion: gv, APIResources: rs}
}

func res(name, singular, kind string, namespaced bool, verbs []string, short ...string) metav1.APIResource {
	return metav1.APIResource{Name: name, SingularName: singular, Kind: kind, Namespaced: namespaced, Verbs: verbs, ShortNames: short}
}

// cluster is a small cluster: core, apps, events.k8s.io, coordination and
// two custom groups, one with two versions.
func cluster() *discover.Index {
	groups := []*metav1.APIGroup{group("", "v1"), group("apps", "v1"), group("events.k8s.io", "v1"), group("coordination.k8s.io", "v1"),
		group("cert-manager.io", "v1"), group("argoproj.io", "v1", "v1alpha1"), group("example.com", "v1")}
	lists := []*metav1.APIResourceList{
		list("v1",
			res("pods", "pod", "Pod", true, rw, "po"), res("pods/status", "", "Pod", true, rw),
			res("nodes", "node", "Node", false, rw, "no"), res("configmaps", "configmap", "ConfigMap", true, rw, "cm"),
			res("secrets", "secret", "Secret", true, rw), res("services", "service", "Service", true, rw, "svc"),
			res("events", "event", "Event", true, rw, "ev"), res("bindings", "binding", "Binding", true, []string{"create"})),
		list("apps/v1", res("deployments", "deployment", "Deployment", true, rw, "deploy")),
		list("events.k8s.io/v1", res("events", "event", "Event", true, rw, "ev")),
		list("coordination.k8s.io/v1", res("leases", "lease", "Lease", true, rw)),
		list("cert-manager.io/v1", res("certificates", "certificate", "Certificate", true, rw, "cert")),
		list("argoproj.io/v1", res("rollouts", "rollout", "Rollout", true, rw, "ro")),
		list("argoproj.io/v1alpha1", res("rollouts", "rollout", "Rollout", true, rw, "ro")),
		list("example.com/v1", res("widgets", "widget", "Widget", true, rw), res("gadgets", "gadget", "Gadget", false, rw)),
	}
	return discover.NewIndex(groups, lists)
}

func resolve(t *testing.T, kindList, exclude, metadataOnly string) ([]kinds.Kind, error) {
	t.Helper()
	sel, err := discover.Parse(kindList, exclude, metadataOnly)
	if err != nil {
		t.Fatalf("Parse(%q): %v", kindList, err)
	}
	return cluster().Resolve(sel)
}

func TestResolveNamesAsKubectlDoes(t *testing.T) {
	tests := []struct{ in, resource, gvk string }{
		{"pods", "pods", "/v1, Kind=Pod"},
		{"po", "pods", "/v1, Kind=Pod"},
		{"Pod", "pods", "/v1, Kind=Pod"},
		{"deploy", "deployments", "apps/v1, Kind=Deployment"},
		{"deployments.apps", "deployments", "apps/v1, Kind=Deployment"},
		{"deployment.apps", "deployments", "apps/v1, Kind=Deployment"},
		{"svc", "services", "/v1, Kind=Service"},
		{"events", "events", "/v1, Kind=Event"}, // the core group wins, as in kubectl
		{"events.events.k8s.io", "events.events.k8s.io", "events.k8s.io/v1, Kind=Event"},
		{"certificates.cert-manager.io", "certificates.cert-manager.io", "cert-manager.io/v1, Kind=Certificate"},
		{"cert", "certificates.cert-manager.io", "cert-manager.io/v1, Kind=Certificate"},
		{"rollouts.v1alpha1.argoproj.io", "rollouts.argoproj.io", "argoproj.io/v1alpha1, Kind=Rollout"},
		{"rollouts.argoproj.io", "rollouts.argoproj.io", "argoproj.io/v1, Kind=Rollout"},
	}
	for _, tt := range tests {
		ks, err := resolve(t, tt.in, "", "")
		if err != nil || len(ks) != 1 {
			t.Errorf("%s: %v, %v", tt.in, ks, err)
			continue
		}
		if ks[0].Resource != tt.resource || ks[0].GVK.String() != tt.gvk {
			t.Errorf("%s resolved to %s %s, want %s %s", tt.in, ks[0].Resource, ks[0].GVK, tt.resource, tt.gvk)
		}
	}
	ks, _ := resolve(t, "pods,nodes,deploy,cm", "", "")
	for i, want := range kinds.All() {
		if !slices.ContainsFunc(ks, func(k kinds.Kind) bool { return k == want }) {
			t.Errorf("typed kind %d %s resolved differently: %+v", i, want.Resource, ks)
		}
		if typed, ok := want.Typed(); !ok || typed.Summarize == nil {
			t.Errorf("%s has no typed summary", want.Resource)
		}
	}
	svc, _ := resolve(t, "services", "", "")
	if svc[0].ProtoType != "k8s.io.api.core.v1.Service" || !svc[0].Protobuf() {
		t.Errorf("services: proto type %q", svc[0].ProtoType)
	}
	w, _ := resolve(t, "widgets.example.com", "", "")
	if w[0].Protobuf() || !w[0].Namespaced || w[0].Plural != "widgets" {
		t.Errorf("a custom resource resolved as %+v", w[0])
	}
}

func TestResolveFailsWithClosestMatches(t *testing.T) {
	tests := []struct{ in, want string }{
		{"pdos", `unknown kind "pdos": did you mean pods`},
		{"certificate.cert-manager", `unknown kind "certificate.cert-manager": did you mean certificates.cert-manager.io`},
		{"zzzzzzzzzzzz", "see kubectl api-resources"},
		{"bindings", `kind "bindings" (bindings) cannot be listed and watched`},
	}
	for _, tt := range tests {
		_, err := resolve(t, tt.in, "", "")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.in, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error spans lines: %q", tt.in, err)
		}
	}
}

func TestPatternsExcludeNoiseUnlessNamed(t *testing.T) {
	ks, err := resolve(t, "*", discover.DefaultExclude, discover.DefaultMetadataOnly)
	if err != nil {
		t.Fatal(err)
	}
	got := kinds.Names(ks)
	for _, noise := range []string{"events", "events.events.k8s.io", "leases.coordination.k8s.io", "bindings"} {
		if slices.Contains(got, noise) {
			t.Errorf("'*' picked %s: %v", noise, got)
		}
	}
	for _, want := range []string{"pods", "deployments", "secrets", "certificates.cert-manager.io", "rollouts.argoproj.io", "widgets.example.com", "gadgets.example.com"} {
		if !slices.Contains(got, want) {
			t.Errorf("'*' missed %s: %v", want, got)
		}
	}
	for _, k := range ks {
		if k.MetadataOnly != (k.Resource == "secrets") {
			t.Errorf("%s metadata-only = %v", k.Resource, k.MetadataOnly)
		}
		if k.GVK.Group == "argoproj.io" && k.GVK.Version != "v1" {
			t.Errorf("a pattern picked the non-preferred version %s", k.GVK)
		}
	}
	ks, _ = resolve(t, "*.example.com,pods,events", discover.DefaultExclude, "")
	if got := kinds.Names(ks); !slices.Equal(got, []string{"pods", "events", "gadgets.example.com", "widgets.example.com"}) {
		t.Errorf("'*.example.com,pods,events' = %v", got)
	}
	ks, _ = resolve(t, "*.apps", "", "")
	if got := kinds.Names(ks); !slices.Equal(got, []string{"deployments"}) {
		t.Errorf("'*.apps' = %v", got)
	}
	if ks, err := resolve(t, "*.nothing.example", "", ""); err != nil || len(ks) != 0 {
		t.Errorf("a pattern matching nothing (yet): %v, %v", ks, err)
	}
	sel, _ := discover.Parse("pods,gone.example.com,*.example.com", "", "")
	ks, missing := cluster().ResolveAvailable(sel)
	if len(missing) != 1 || !strings.Contains(missing[0].Error(), `unknown kind "gone.example.com"`) || !slices.Equal(kinds.Names(ks), []string{"pods", "gadgets.example.com", "widgets.example.com"}) {
		t.Errorf("ResolveAvailable = %v, %v", kinds.Names(ks), missing)
	}
	sel, _ = discover.Parse("*.example.com", discover.DefaultExclude, "")
	if !sel.Covers("widgets.example.com") || sel.Covers("pods") {
		t.Error("Covers disagrees with the pattern")
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := discover.Parse("pods,Pods/x, ,a b", "ev[", "")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`--kinds: "pods/x"`, `--kinds: "a b"`, `--exclude-kinds: "ev["`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := discover.Parse(" , ", "", ""); err == nil || !strings.Contains(err.Error(), "no kinds given") {
		t.Errorf("empty --kinds: %v", err)
	}
}
