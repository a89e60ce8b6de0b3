package event

import (
	"reflect"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/redact"
)

var configMapType = reflect.TypeOf(&corev1.ConfigMap{})

// redacted returns a config map state with its values treated by the
// policy, as both the cached and the decoded form (the cached bytes hold the
// values, so they are not sent). Other states are returned as they are.
func (t *Translator) redacted(cached, full change.Object) (change.Object, change.Object) {
	cm, ok := full.(*corev1.ConfigMap)
	if !ok || t.ConfigMapData == redact.Full {
		return cached, full
	}
	r := redact.ConfigMap(cm, t.ConfigMapData)
	return r, r
}

// notePolicy records the policy in a config map summary; with keys it also
// drops the hash over all values, which would let a guess be checked.
func (t *Translator) notePolicy(oc *kubestreamv1.ObjectChange) {
	cm := oc.GetConfigMap()
	if cm == nil {
		return
	}
	cm.DataPolicy = t.ConfigMapData.Proto()
	if t.ConfigMapData == redact.Keys {
		cm.DataHash = ""
	}
}
