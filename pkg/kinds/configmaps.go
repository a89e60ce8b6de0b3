package kinds

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// ConfigMaps are kept compact; their summary names keys and sizes, never values.
var ConfigMaps = declare(
	Kind{Resource: "configmaps", GVK: schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, Namespaced: true, ProtoType: "k8s.io.api.core.v1.ConfigMap"},
	Typed{Summarize: func(obj runtime.Object, oc *kubestreamv1.ObjectChange) {
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			oc.Summary = &kubestreamv1.ObjectChange_ConfigMap{ConfigMap: ConfigMapSummary(cm)}
		}
	}},
)

// ConfigMapSummary summarizes a config map without its values.
func ConfigMapSummary(cm *corev1.ConfigMap) *kubestreamv1.ConfigMapSummary {
	s := &kubestreamv1.ConfigMapSummary{Immutable: cm.Immutable != nil && *cm.Immutable}
	sizes := make(map[string]int64, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		sizes[k] = int64(len(v))
	}
	for k, v := range cm.BinaryData {
		sizes[k] = int64(len(v))
	}
	keys := make([]string, 0, len(sizes))
	for k := range sizes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
		if v, ok := cm.Data[k]; ok {
			h.Write([]byte(v))
		} else {
			h.Write(cm.BinaryData[k])
		}
		h.Write([]byte{0})
	}
	s.Keys = keys
	if len(sizes) > 0 {
		s.ValueSizes = sizes
	}
	s.DataHash = hex.EncodeToString(h.Sum(nil))
	return s
}
