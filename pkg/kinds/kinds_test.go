package kinds_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/kubestream/kubestream/pkg/kinds"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"pods,nodes", []string{"nodes", "pods"}, ""},
		{"Pod, configmap ,deployments,pods", []string{"pods", "deployments", "configmaps"}, ""},
		{"ConfigMap", []string{"configmaps"}, ""},
		{"pods,secrets", nil, `unknown kind "secrets"`},
		{" , ", nil, "no kinds given"},
	}
	for _, tt := range tests {
		got, err := kinds.Parse(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(kinds.Names(got), tt.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", tt.in, kinds.Names(got), err, tt.want)
		}
	}
}

func TestNamespacedAndProtoTypes(t *testing.T) {
	for _, k := range kinds.All() {
		if k.Namespaced == (k.Resource == "nodes") {
			t.Errorf("%s: namespaced = %v", k.Resource, k.Namespaced)
		}
		if !strings.HasSuffix(k.ProtoType, "."+k.GVK.Kind) {
			t.Errorf("%s: proto type %s does not name kind %s", k.Resource, k.ProtoType, k.GVK.Kind)
		}
	}
}
