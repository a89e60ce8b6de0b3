// Package kinds is the registry of what kubestream knows about Kubernetes
// kinds: every watched kind is a Kind (from discovery, or one of the typed
// kinds declared in this package), and everything that depends on a kind
// (the informer's decoding, the encoder, summaries, RBAC, topic and subject
// names) asks it here. A typed kind is declared in one file (pods.go):
// its identity and its summary.
package kinds

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// Kind describes one watched kind.
type Kind struct {
	// Resource is kubestream's name of the kind: it names topics, subjects,
	// record keys, resume keys and ObjectRef.resource. It is the plural
	// resource for the core group ("services") and for the four kinds
	// kubestream started with ("deployments"), and kubectl's qualified form
	// "<plural>.<group>" otherwise ("certificates.cert-manager.io"). Plural
	// resources never contain dots, so the name splits back unambiguously.
	Resource string
	// Plural is the resource in API paths ("certificates").
	Plural string
	GVK    schema.GroupVersionKind
	// Namespaced is false for cluster-scoped kinds.
	Namespaced bool
	// ProtoType is the fully qualified Kubernetes protobuf message of the
	// objects; empty when the apiserver serves the kind as JSON only (custom
	// resources).
	ProtoType string
	// MetadataOnly kinds are watched as PartialObjectMetadata: states carry
	// metadata only (names, labels, annotations, owners), never spec, status
	// or data.
	MetadataOnly bool
}

// Typed is what kubestream knows of a kind beyond what discovery says.
type Typed struct {
	// Decoded kinds stay decoded in the cache (nodes: few, and image-storage
	// accounting reads every change); others are kept compact.
	Decoded bool
	// Summarize sets the kind's typed summary on oc from a decoded object.
	Summarize func(obj runtime.Object, oc *kubestreamv1.ObjectChange)
	// DecodeForSummary, when set, decodes from an object's protobuf only
	// what Summarize and an event's object reference read (metadata and
	// a few fields): an event whose states are sent as they were received
	// needs no more.
	DecodeForSummary func(raw []byte) (runtime.Object, error)
}

// MetadataProtoType is the protobuf message of metadata-only states.
const MetadataProtoType = "k8s.io.apimachinery.pkg.apis.meta.v1.PartialObjectMetadata"

// ImageStorage is the resource name of derived image-storage events: it names
// their topic and subject token. It is not a Kubernetes kind.
const ImageStorage = "imagestorage"

var typed = map[schema.GroupKind]Typed{}

// declare registers a typed kind; its files call it from a var declaration.
func declare(k Kind, t Typed) Kind {
	if k.Plural == "" {
		k.Plural = k.Resource
	}
	typed[k.GVK.GroupKind()] = t
	return k
}

// Typed returns the typed knowledge of k, if any. Metadata-only kinds have
// none: their states are not the typed object.
func (k Kind) Typed() (Typed, bool) {
	if k.MetadataOnly {
		return Typed{}, false
	}
	t, ok := typed[k.GVK.GroupKind()]
	return t, ok
}

// GVR is the kind's group, version and plural resource.
func (k Kind) GVR() schema.GroupVersionResource {
	return k.GVK.GroupVersion().WithResource(k.plural())
}

func (k Kind) plural() string {
	if k.Plural != "" {
		return k.Plural
	}
	return k.Resource
}

// Protobuf reports whether objects arrive and are cached as Kubernetes
// protobuf (else JSON).
func (k Kind) Protobuf() bool { return k.MetadataOnly || k.ProtoType != "" }

// StateProtoType is the protobuf message of the kind's states on the wire.
func (k Kind) StateProtoType() string {
	if k.MetadataOnly {
		return MetadataProtoType
	}
	return k.ProtoType
}

// NewObject returns an empty object of the kind as the cache decodes it:
// the typed Go object for kinds in client-go's scheme, PartialObjectMetadata
// for metadata-only kinds, and Unstructured for the rest.
func (k Kind) NewObject() runtime.Object {
	switch {
	case k.MetadataOnly:
		return &metav1.PartialObjectMetadata{}
	case k.ProtoType != "":
		if obj, err := scheme.Scheme.New(k.GVK); err == nil {
			return obj
		}
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(k.GVK)
	return u
}

// ListKind is the Kubernetes kind of the kind's lists as the apiserver
// sends them.
func (k Kind) ListKind() string { return k.ItemKind() + "List" }

// ItemKind is the Kubernetes kind of the objects as the apiserver sends
// them: the kind itself, or PartialObjectMetadata.
func (k Kind) ItemKind() string {
	if k.MetadataOnly {
		return "PartialObjectMetadata"
	}
	return k.GVK.Kind
}

// Name returns the resource name of a group and plural resource, as Kind.Resource.
func Name(group, plural string) string {
	if group == "" {
		return plural
	}
	for _, b := range typedKinds {
		if b.GVK.Group == group && b.Plural == plural {
			return b.Resource
		}
	}
	return plural + "." + group
}

// SplitName reverses Name: "certificates.cert-manager.io" is the plural
// "certificates" of group "cert-manager.io".
func SplitName(name string) (group, plural string) {
	for _, b := range typedKinds {
		if b.Resource == name {
			return b.GVK.Group, b.Plural
		}
	}
	plural, group, _ = strings.Cut(name, ".")
	return group, plural
}

// ProtoTypeOf is the protobuf message name of a kind in client-go's scheme
// ("k8s.io.api.core.v1.Service"), or "" when the scheme does not know it and
// the apiserver serves it as JSON.
func ProtoTypeOf(gvk schema.GroupVersionKind) string {
	obj, err := scheme.Scheme.New(gvk)
	if err != nil {
		return ""
	}
	if _, ok := obj.(interface{ Marshal() ([]byte, error) }); !ok {
		return ""
	}
	t := reflect.TypeOf(obj).Elem()
	return strings.ReplaceAll(t.PkgPath(), "/", ".") + "." + t.Name()
}

// Discovered builds the Kind of a resource discovery reported.
func Discovered(gvk schema.GroupVersionKind, plural string, namespaced, metadataOnly bool) Kind {
	return Kind{
		Resource:     Name(gvk.Group, plural),
		Plural:       plural,
		GVK:          gvk,
		Namespaced:   namespaced,
		ProtoType:    ProtoTypeOf(gvk),
		MetadataOnly: metadataOnly,
	}
}

// typedKinds are the typed kinds in their stable order; lookups range over
// it without allocating (they run per event).
var typedKinds = []Kind{Nodes, Pods, Deployments, ConfigMaps}

// All returns the typed kinds, the default selection, in a stable order.
func All() []Kind { return append([]Kind(nil), typedKinds...) }

// Names returns the resource names of ks.
func Names(ks []Kind) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.Resource
	}
	return out
}

// ByResource finds a typed kind by resource name.
func ByResource(resource string) (Kind, bool) {
	for _, k := range typedKinds {
		if k.Resource == resource {
			return k, true
		}
	}
	return Kind{}, false
}

// ByKind finds a typed kind by its Kubernetes Kind ("Pod").
func ByKind(kind string) (Kind, bool) {
	for _, k := range typedKinds {
		if k.GVK.Kind == kind {
			return k, true
		}
	}
	return Kind{}, false
}

// Parse reads a comma-separated list of typed kinds such as "pods,nodes",
// without a cluster to ask. Singular names and Kubernetes kinds are accepted
// too ("pod", "Pod", "configmap"). The result is de-duplicated and in All's
// order. Anything else needs discovery (package discover).
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
	for _, k := range typedKinds {
		if want[k.Resource] {
			out = append(out, k)
		}
	}
	return out, nil
}

func lookupLoose(name string) (Kind, bool) {
	for _, k := range typedKinds {
		singular := strings.TrimSuffix(k.Resource, "s")
		if name == k.Resource || name == singular || name == strings.ToLower(k.GVK.Kind) ||
			(k.GVK.Group != "" && name == k.Plural+"."+k.GVK.Group) {
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
