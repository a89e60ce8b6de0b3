package source

import (
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/kubestream/kubestream/internal/testobj"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// encode writes obj the way the apiserver does: protobuf in the k8s envelope.
func encode(t *testing.T, obj runtime.Object) []byte {
	t.Helper()
	info, _ := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), protobufMediaType)
	var buf bytes.Buffer
	enc := scheme.Codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion)
	if err := enc.Encode(obj, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compactDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	return decoderFor(t, kinds.Pods)
}

func decoderFor(t *testing.T, k kinds.Kind) runtime.Decoder {
	t.Helper()
	mt := jsonMediaType
	if k.Protobuf() {
		mt = protobufMediaType
	}
	infos := compactNegotiator{mediaType: mt, kind: k, codec: codecFor(k)}.SupportedMediaTypes()
	if len(infos) != 1 || infos[0].StreamSerializer == nil {
		t.Fatalf("negotiator offers %v, want protobuf with a stream serializer for watches", infos)
	}
	return infos[0].Serializer
}

func TestCompactDecoderTurnsPodsAndListsIntoCompacts(t *testing.T) {
	dec := compactDecoder(t)
	pod := testobj.Pod("shop", "web-0", "u1", "42", "web:1")
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	obj, _, err := dec.Decode(encode(t, pod), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := obj.(*change.Compact)
	if !ok || c.GetName() != "web-0" || c.GetResourceVersion() != "42" {
		t.Fatalf("decoded %T %v", obj, obj)
	}
	full, _ := change.Full(c)
	if p := full.(*corev1.Pod); len(p.ManagedFields) != 0 || p.Spec.Containers[0].Image != "web:1" {
		t.Fatalf("compact pod decodes to %v", p)
	}

	list := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "50", Continue: "tok"}, Items: []corev1.Pod{*pod, *testobj.Pod("shop", "web-1", "u2", "43", "web:1")}}
	obj, _, err = dec.Decode(encode(t, list), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, ok := obj.(*change.CompactList)
	if !ok || cl.ResourceVersion != "50" || cl.Continue != "tok" || len(cl.Items) != 2 {
		t.Fatalf("decoded list %T %+v", obj, obj)
	}
}

func TestCompactDecoderLeavesStatusAndOtherKindsAlone(t *testing.T) {
	dec := compactDecoder(t)
	status := &metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonExpired, Code: 410, Message: "too old resource version"}
	obj, _, err := dec.Decode(encode(t, status), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := obj.(*metav1.Status); !ok || s.Code != 410 || s.Reason != metav1.StatusReasonExpired {
		t.Fatalf("a watch's expiry Status decoded as %T %v", obj, obj)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	obj, _, err = dec.Decode(encode(t, node), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := obj.(*corev1.Node); !ok {
		t.Fatalf("a node decoded as %T", obj)
	}
}

func TestWatchListBookmarkKeepsItsAnnotation(t *testing.T) {
	dec := compactDecoder(t)
	bookmark := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "77", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}
	obj, _, err := dec.Decode(encode(t, bookmark), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := obj.(*change.Compact)
	if c.GetAnnotations()[metav1.InitialEventsAnnotationKey] != "true" || c.GetResourceVersion() != "77" {
		t.Fatalf("bookmark lost what the reflector needs: %v @%s", c.GetAnnotations(), c.GetResourceVersion())
	}
	plain, _, _ := dec.Decode(encode(t, testobj.Pod("a", "b", "u", "1", "i")), nil, nil)
	if len(plain.(*change.Compact).GetAnnotations()) != 0 {
		t.Fatal("an ordinary pod claims to end the initial events")
	}
}

var widgets = kinds.Discovered(schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Widget"}, "widgets", true, false)

func TestJSONDecoderTurnsCustomResourcesAndListsIntoCompacts(t *testing.T) {
	if widgets.Protobuf() || widgets.Resource != "widgets.example.com" {
		t.Fatalf("a custom resource resolved as %+v", widgets)
	}
	dec := decoderFor(t, widgets)
	item := `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w1","namespace":"shop","uid":"u1","resourceVersion":"7",` +
		`"managedFields":[{"manager":"kubectl","operation":"Apply"}],"labels":{"a":"b"}},"spec":{"size":12345678901234567}}`
	obj, _, err := dec.Decode([]byte(item), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := obj.(*change.Compact)
	if !ok || !c.JSON() || c.GetName() != "w1" || c.GetNamespace() != "shop" || c.GetUID() != "u1" || c.GetResourceVersion() != "7" {
		t.Fatalf("decoded %T %+v", obj, obj)
	}
	if bytes.Contains(c.Bytes(), []byte("managedFields")) || !bytes.Contains(c.Bytes(), []byte("12345678901234567")) {
		t.Fatalf("cached JSON %s: want managedFields dropped and large integers exact", c.Bytes())
	}
	full, err := change.Full(c)
	if err != nil {
		t.Fatal(err)
	}
	if u := full.(*unstructured.Unstructured); u.GetLabels()["a"] != "b" || u.GetKind() != "Widget" {
		t.Fatalf("full object %v", u)
	}
	list := `{"apiVersion":"example.com/v1","kind":"WidgetList","metadata":{"resourceVersion":"9","continue":"tok"},"items":[` + item + `,` +
		strings.Replace(item, `"w1"`, `"w2"`, 1) + `]}`
	obj, _, err = dec.Decode([]byte(list), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cl, ok := obj.(*change.CompactList); !ok || cl.ResourceVersion != "9" || cl.Continue != "tok" || len(cl.Items) != 2 || cl.Items[1].(*change.Compact).GetName() != "w2" {
		t.Fatalf("decoded list %T %+v", obj, obj)
	}
	status := `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","code":410}`
	obj, _, err = dec.Decode([]byte(status), nil, nil)
	if s, ok := obj.(*metav1.Status); err != nil || !ok || s.Code != 410 {
		t.Fatalf("a watch's expiry Status decoded as %T %v (%v)", obj, obj, err)
	}
	bookmark := `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"resourceVersion":"11","annotations":{"k8s.io/initial-events-end":"true"}}}`
	obj, _, err = dec.Decode([]byte(bookmark), nil, nil)
	if c, ok := obj.(*change.Compact); err != nil || !ok || c.GetResourceVersion() != "11" || c.GetAnnotations()[metav1.InitialEventsAnnotationKey] != "true" {
		t.Fatalf("bookmark decoded as %T %v (%v)", obj, obj, err)
	}
}
