package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// Every kind is listed and watched the same way: a REST client for its
// group and version whose decoder turns the apiserver's bytes straight into
// change.Compact (identity plus the encoding, managed fields dropped).
// client-go's typed or dynamic informers would decode every object in full
// (about 6 KB of garbage per pod event) only for the cache to encode it
// again. Kubernetes protobuf where the apiserver serves it (built-in kinds,
// and every kind as PartialObjectMetadata), JSON otherwise (custom
// resources). Kinds kept decoded (nodes) go through client-go's own
// decoder instead.

const (
	protobufMediaType = "application/vnd.kubernetes.protobuf"
	jsonMediaType     = "application/json"
	// Metadata-only kinds ask for PartialObjectMetadata(List) as the
	// metadata client does.
	metadataAccept     = protobufMediaType + ";as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
	metadataListAccept = protobufMediaType + ";as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
)

// protobufEnvelope starts every object the apiserver encodes as protobuf.
var protobufEnvelope = []byte{0x6b, 0x38, 0x73, 0x00}

// listWatch lists and watches one kind.
// codec is the kind's codecFor, nil for kinds kept decoded.
func listWatch(cfg *rest.Config, k kinds.Kind, codec *change.Codec, namespace, selector string) (*cache.ListWatch, error) {
	c := rest.CopyConfig(cfg)
	gv := k.GVK.GroupVersion()
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	if gv.Group == "" {
		c.APIPath = "/api"
	}
	mediaType := jsonMediaType
	if k.Protobuf() {
		mediaType = protobufMediaType
	}
	c.ContentType = mediaType
	c.AcceptContentTypes = mediaType
	c.NegotiatedSerializer = compactNegotiator{mediaType: mediaType, kind: k, codec: codec}
	client, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("build %s client: %w", k.Resource, err)
	}
	if !k.Namespaced {
		namespace = ""
	}
	request := func(options *metav1.ListOptions, accept string) *rest.Request {
		options.LabelSelector = selector
		r := client.Get().Namespace(namespace).Resource(k.Plural).VersionedParams(options, metav1.ParameterCodec)
		if k.MetadataOnly {
			r = r.SetHeader("Accept", accept)
		}
		return r
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, options metav1.ListOptions) (runtime.Object, error) {
			return request(&options, metadataListAccept).Do(ctx).Get()
		},
		WatchFuncWithContext: func(ctx context.Context, options metav1.ListOptions) (watch.Interface, error) {
			options.Watch = true
			return request(&options, metadataAccept).Watch(ctx)
		},
	}, nil
}

// codecFor returns the codec of a kind's compact objects, or nil for kinds
// kept decoded.
func codecFor(k kinds.Kind) *change.Codec {
	if t, ok := k.Typed(); ok && t.Decoded {
		return nil
	}
	if !k.Protobuf() {
		return change.JSONCodec(k.GVK.Kind)
	}
	return change.ProtoCodec(k.ItemKind(), k.NewObject)
}

// exampleObject is what the kind's informer caches.
func exampleObject(codec *change.Codec, k kinds.Kind) runtime.Object {
	if codec == nil {
		return k.NewObject()
	}
	return &change.Compact{}
}

// compactNegotiator offers one media type, decoded by compactSerializer.
type compactNegotiator struct {
	mediaType string
	kind      kinds.Kind
	codec     *change.Codec
}

func (n compactNegotiator) SupportedMediaTypes() []runtime.SerializerInfo {
	std, ok := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), n.mediaType)
	if !ok {
		return nil
	}
	info := std
	info.Serializer = compactSerializer{std: std.Serializer, kind: n.kind, codec: n.codec}
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

// compactSerializer decodes the kind's objects and lists into change.Compact
// and change.CompactList, and anything else (a Status of an error, an
// expired watch; every object of a kind kept decoded) with client-go's
// serializer.
type compactSerializer struct {
	std   runtime.Serializer
	kind  kinds.Kind
	codec *change.Codec
}

func (s compactSerializer) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if s.codec == nil {
		return s.std.Decode(data, defaults, into)
	}
	if bytes.HasPrefix(data, protobufEnvelope) {
		var unk runtime.Unknown
		if err := unk.Unmarshal(data[len(protobufEnvelope):]); err != nil {
			return nil, nil, fmt.Errorf("decode protobuf envelope: %w", err)
		}
		gvk := schema.FromAPIVersionAndKind(unk.APIVersion, unk.Kind)
		switch unk.Kind {
		case s.kind.ItemKind():
			obj, err := s.codec.FromProto(unk.Raw)
			return obj, &gvk, err
		case s.kind.ListKind():
			list, err := s.codec.ListFromProto(unk.Raw)
			return list, &gvk, err
		}
		return s.std.Decode(data, defaults, into)
	}
	if s.kind.Protobuf() {
		return s.std.Decode(data, defaults, into)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return nil, nil, fmt.Errorf("decode %s: %w", s.kind.Resource, err)
	}
	gvk := tm.GroupVersionKind()
	switch tm.Kind {
	case s.kind.GVK.Kind:
		obj, err := s.codec.FromJSON(data)
		return obj, &gvk, err
	case s.kind.ListKind():
		list, err := s.codec.ListFromJSON(data)
		return list, &gvk, err
	}
	return s.std.Decode(data, defaults, into)
}

func (s compactSerializer) Encode(obj runtime.Object, w io.Writer) error {
	if _, ok := obj.(*change.Compact); ok {
		return errors.New("compact objects are never sent to the apiserver")
	}
	return s.std.Encode(obj, w)
}

func (compactSerializer) Identifier() runtime.Identifier { return "kubestream-compact" }
