// Package kinds is the registry of the Kubernetes kinds kubestream watches.
package kinds

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Kind describes one watched kind.
type Kind struct {
	// Resource is the lower-case plural resource name users type
	// (--kinds pods,nodes) and that names topics and subjects.
	Resource string
	GVK      schema.GroupVersionKind
	// Namespaced is false for cluster-scoped kinds.
	Namespaced bool
	// ProtoType is the fully qualified Kubernetes protobuf message name.
	ProtoType string
}

// The watched kinds.
var (
	Nodes       = Kind{Resource: "nodes", GVK: schema.GroupVersionKind{Version: "v1", Kind: "Node"}, ProtoType: "k8s.io.api.core.v1.Node"}
	Pods        = Kind{Resource: "pods", GVK: schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespaced: true, ProtoType: "k8s.io.api.core.v1.Pod"}
	Deployments = Kind{Resource: "deployments", GVK: schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, Namespaced: true, ProtoType: "k8s.io.api.apps.v1.Deployment"}
	ConfigMaps  = Kind{Resource: "configmaps", GVK: schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, Namespaced: true, ProtoType: "k8s.io.api.core.v1.ConfigMap"}
)

// ImageStorage is the resource name of derived image-storage events: it names
// their topic and subject token. It is not a Kubernetes kind.
const ImageStorage = "imagestorage"

// All returns every watched kind in a stable order.
func All() []Kind { return []Kind{Nodes, Pods, Deployments, ConfigMaps} }

// Names returns the resource names of ks.
func Names(ks []Kind) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.Resource
	}
	return out
}

// ByResource finds a kind by resource name.
func ByResource(resource string) (Kind, bool) {
	for _, k := range All() {
		if k.Resource == resource {
			return k, true
		}
	}
	return Kind{}, false
}

// ByKind finds a kind by its Kubernetes Kind ("Pod").
func ByKind(kind string) (Kind, bool) {
	for _, k := range All() {
		if k.GVK.Kind == kind {
			return k, true
		}
	}
	return Kind{}, false
}

// Parse reads a comma-separated list such as "pods,nodes". Singular names and
// Kubernetes kinds are accepted too ("pod", "Pod", "configmap"). The result is
// de-duplicated and in All's order.
func Parse(list string) ([]Kind, error) {
	want := map[string]bool{}
	for _, raw := range strings.Split(list, ",") {
		name := strings.ToLower(strings.TrimSpace(raw))
		if name == "" {
			continue
		}
		k, ok := lookupLoose(name)
		if !ok {
			return nil, fmt.Errorf("unknown kind %q: choose from %s", raw, strings.Join(Names(All()), ", "))
		}
		want[k.Resource] = true
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("no kinds given: choose from %s", strings.Join(Names(All()), ", "))
	}
	var out []Kind
	for _, k := range All() {
		if want[k.Resource] {
			out = append(out, k)
		}
	}
	return out, nil
}

func lookupLoose(name string) (Kind, bool) {
	for _, k := range All() {
		singular := strings.TrimSuffix(k.Resource, "s")
		if name == k.Resource || name == singular || name == strings.ToLower(k.GVK.Kind) {
			return k, true
		}
	}
	return Kind{}, false
}

// SortedNames returns resource names sorted, for stable log lines.
func SortedNames(ks []Kind) []string {
	n := Names(ks)
	sort.Strings(n)
	return n
}
