package source

import (
	"bytes"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/kubestream/kubestream/internal/testobj"
	"github.com/kubestream/kubestream/pkg/change"
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
	infos := compactNegotiator{}.SupportedMediaTypes()
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
