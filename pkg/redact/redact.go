// Package redact keeps config map values out of events: --configmap-data
// says whether values are sent as stored, as their SHA-256, or not at all.
// Config maps often hold what should have been secrets (passwords in
// application.properties, tokens in env files); every topic reader would
// otherwise receive them.
package redact

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// Policy says how config map values appear in events.
type Policy int

const (
	// Full sends values as stored (the default).
	Full Policy = iota
	// Hash replaces each value with the hex SHA-256 of the value: consumers
	// see which values changed and can compare against a known value, but
	// cannot read one. Values easy to guess (a port, "true") can be found by
	// hashing guesses: use Keys for those.
	Hash
	// Keys drops values: only the keys remain.
	Keys
)

// Names are the flag spellings, in Policy order.
var Names = []string{"full", "hash", "keys"}

// Parse reads a --configmap-data value.
func Parse(s string) (Policy, error) {
	for i, n := range Names {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return Policy(i), nil
		}
	}
	return Full, fmt.Errorf("--configmap-data %q is not a policy: use one of %s", s, strings.Join(Names, ", "))
}

func (p Policy) String() string {
	if p < 0 || int(p) >= len(Names) {
		return fmt.Sprintf("Policy(%d)", int(p))
	}
	return Names[p]
}

// Proto is the policy as ConfigMapSummary.data_policy reports it.
func (p Policy) Proto() kubestreamv1.ConfigMapDataPolicy {
	switch p {
	case Hash:
		return kubestreamv1.ConfigMapDataPolicy_CONFIG_MAP_DATA_POLICY_HASH
	case Keys:
		return kubestreamv1.ConfigMapDataPolicy_CONFIG_MAP_DATA_POLICY_KEYS
	}
	return kubestreamv1.ConfigMapDataPolicy_CONFIG_MAP_DATA_POLICY_FULL
}

// LastAppliedAnnotation is where kubectl apply keeps the whole object as
// JSON, values included: it is a value too.
const LastAppliedAnnotation = corev1.LastAppliedConfigAnnotation

// ConfigMap returns cm with its values treated by p: cm itself when p is
// Full, else a copy (cm is the informer cache's and is never modified).
// The values of data and binaryData and the last-applied-configuration
// annotation are hashed (Hash) or emptied (Keys); keys stay.
func ConfigMap(cm *corev1.ConfigMap, p Policy) *corev1.ConfigMap {
	if cm == nil || p == Full {
		return cm
	}
	out := *cm
	if cm.Data != nil {
		out.Data = make(map[string]string, len(cm.Data))
		for k, v := range cm.Data {
			out.Data[k] = p.value(v)
		}
	}
	if cm.BinaryData != nil {
		out.BinaryData = make(map[string][]byte, len(cm.BinaryData))
		for k, v := range cm.BinaryData {
			out.BinaryData[k] = []byte(p.value(string(v)))
		}
	}
	if v, ok := cm.Annotations[LastAppliedAnnotation]; ok {
		out.Annotations = make(map[string]string, len(cm.Annotations))
		for k, a := range cm.Annotations {
			out.Annotations[k] = a
		}
		out.Annotations[LastAppliedAnnotation] = p.value(v)
	}
	return &out
}

func (p Policy) value(v string) string {
	if p == Keys {
		return ""
	}
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}
