package controlplane

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func TestStartServesTheAPI(t *testing.T) {
	cp, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	cs := kubernetes.NewForConfigOrDie(cp.RestConfig())
	ns, err := cs.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get default namespace: %v", err)
	}
	if ns.Name != "default" {
		t.Fatalf("got namespace %q", ns.Name)
	}
}
