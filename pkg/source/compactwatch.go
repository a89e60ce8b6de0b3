package source

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// The kinds kept compact (pods, deployments, config maps) are listed and
// watched with a decoder that turns the apiserver's protobuf straight into
// change.Compact: client-go's typed informers would decode every object in
// full (about 6 KB of garbage per pod event) only for the cache to encode it
// again. The compact decoder reads the identity from the bytes and drops
// managedFields from them; nothing else is decoded until an event needs it.

const protobufMediaType = "application/vnd.kubernetes.protobuf"

// protobufEnvelope starts every object the apiserver encodes as protobuf.
var protobufEnvelope = []byte{0x6b, 0x38, 0x73, 0x00}

// compactListWatch lists and watches one compacted kind.
func compactListWatch(cfg *rest.Config, k kinds.Kind, namespace, selector string) (*cache.ListWatch, error) {
	c := rest.CopyConfig(cfg)
	gv := k.GVK.GroupVersion()
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	if gv.Group == "" {
		c.APIPath = "/api"
	}
	c.ContentType = protobufMediaType
	c.AcceptContentTypes = protobufMediaType
	c.NegotiatedSerializer = compactNegotiator{}
	client, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("build %s client: %w", k.Resource, err)
	}
	if !k.Namespaced {
		namespace = ""
	}
	return cache.NewFilteredListWatchFromClient(client, k.Resource, namespace, func(o *metav1.ListOptions) {
		o.LabelSelector = selector
	}), nil
}

// compactNegotiator offers protobuf only, decoded by compactSerializer.
type compactNegotiator struct{}

func (compactNegotiator) SupportedMediaTypes() []runtime.SerializerInfo {
	std, ok := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), protobufMediaType)
	if !ok {
		return nil
	}
	info := std
	info.Serializer = compactSerializer{std: std.Serializer}
	// Watch frames (metav1.WatchEvent) keep the standard stream decoder;
	// the objects inside them go through compactSerializer.
	return []runtime.SerializerInfo{info}
}

func (compactNegotiator) EncoderForVersion(e runtime.Encoder, _ runtime.GroupVersioner) runtime.Encoder {
	return e
}

func (compactNegotiator) DecoderToVersion(d runtime.Decoder, _ runtime.GroupVersioner) runtime.Decoder {
	return d
}

// compactSerializer decodes compacted kinds and their lists into
// change.Compact and change.CompactList, and anything else (a Status of an
// error, an expired watch) with client-go's protobuf serializer.
type compactSerializer struct {
	std runtime.Serializer
}

func (s compactSerializer) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if !bytes.HasPrefix(data, protobufEnvelope) {
		return s.std.Decode(data, defaults, into)
	}
	var unk runtime.Unknown
	if err := unk.Unmarshal(data[len(protobufEnvelope):]); err != nil {
		return nil, nil, fmt.Errorf("decode protobuf envelope: %w", err)
	}
	gvk := schema.FromAPIVersionAndKind(unk.APIVersion, unk.Kind)
	if item, isList := strings.CutSuffix(unk.Kind, "List"); isList && change.CompactKind(item) {
		list, err := change.CompactListFromProto(item, unk.Raw)
		return list, &gvk, err
	}
	if change.CompactKind(unk.Kind) {
		obj, err := change.CompactFromProto(unk.Kind, unk.Raw)
		return obj, &gvk, err
	}
	return s.std.Decode(data, defaults, into)
}

func (s compactSerializer) Encode(obj runtime.Object, w io.Writer) error {
	if _, ok := obj.(*change.Compact); ok {
		return errors.New("compact objects are never sent to the apiserver")
	}
	return s.std.Encode(obj, w)
}

func (compactSerializer) Identifier() runtime.Identifier { return "kubestream-compact-protobuf" }
