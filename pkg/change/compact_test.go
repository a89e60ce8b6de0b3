package change_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubestream/kubestream/internal/testobj"
	"github.com/kubestream/kubestream/pkg/change"
)

func TestCompactRoundTrip(t *testing.T) {
	pod := testobj.Pod("shop", "web-0", "u1", "42", "web:1")
	c, err := change.Compacted(pod)
	if err != nil {
		t.Fatal(err)
	}
	compact, ok := c.(*change.Compact)
	if !ok {
		t.Fatalf("a pod was cached as %T", c)
	}
	if compact.GetNamespace() != "shop" || compact.GetName() != "web-0" || compact.GetUID() != "u1" || compact.GetResourceVersion() != "42" {
		t.Fatalf("identity %s/%s %s@%s", compact.GetNamespace(), compact.GetName(), compact.GetUID(), compact.GetResourceVersion())
	}
	full, err := change.Full(compact)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := full.(*corev1.Pod)
	if !ok || got.Spec.Containers[0].Image != "web:1" || got.Labels["app"] != "web-0" {
		t.Fatalf("decoded %#v", full)
	}
	again, _ := change.Compacted(compact)
	if again != c {
		t.Fatal("compacting a compact object made a new one")
	}
}

func TestDecodedObjectsPassThrough(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{"kind": "Widget"}}
	c, err := change.Compacted(u)
	if err != nil || c != u {
		t.Fatalf("an object without protobuf was changed to %T (%v)", c, err)
	}
	node := &corev1.Node{}
	full, err := change.Full(node)
	if err != nil || full != node {
		t.Fatal("Full changed a decoded object")
	}
}
