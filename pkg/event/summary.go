package event

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// summarize fills the kind's summary into oc: its typed one, else the
// generic one.
func summarize(oc *kubestreamv1.ObjectChange, kind kinds.Kind, obj change.Object) {
	if t, ok := kind.Typed(); ok && t.Summarize != nil {
		t.Summarize(obj, oc)
		if oc.Summary != nil {
			return
		}
	}
	if s := GenericSummary(obj); s != nil {
		oc.Summary = &kubestreamv1.ObjectChange_Generic{Generic: s}
	}
}

// GenericSummary summarizes an object of any kind from the fields API
// conventions give most kinds: status.phase, status.conditions,
// generation against status.observedGeneration, deletion, and a hash of
// everything but metadata.
func GenericSummary(obj change.Object) *kubestreamv1.GenericSummary {
	s := &kubestreamv1.GenericSummary{
		Generation:  obj.GetGeneration(),
		Terminating: obj.GetDeletionTimestamp() != nil,
	}
	if _, ok := obj.(*metav1.PartialObjectMetadata); ok {
		return s
	}
	content, err := contentOf(obj)
	if err != nil {
		return s
	}
	status, _ := content["status"].(map[string]any)
	if phase, ok := status["phase"].(string); ok {
		s.Phase = phase
	}
	if og, ok := status["observedGeneration"]; ok {
		if n, ok := toInt64(og); ok {
			s.ObservedGeneration, s.HasObservedGeneration = n, true
		}
	}
	if conds, ok := status["conditions"].([]any); ok {
		for _, c := range conds {
			if cond := condition(c); cond != nil {
				s.Conditions = append(s.Conditions, cond)
			}
		}
	}
	delete(content, "metadata")
	if b, err := json.Marshal(content); err == nil { // map keys sorted: canonical
		sum := sha256.Sum256(b)
		s.ContentHash = hex.EncodeToString(sum[:])
	}
	return s
}

// contentOf returns the object as JSON-shaped maps: its own for
// Unstructured, a conversion for typed objects. The result may be changed.
func contentOf(obj change.Object) (map[string]any, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		out := make(map[string]any, len(u.Object))
		for k, v := range u.Object {
			out[k] = v
		}
		return out, nil
	}
	return runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
}

func condition(v any) *kubestreamv1.Condition {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	typ, _ := m["type"].(string)
	status, _ := m["status"].(string)
	if typ == "" || status == "" {
		return nil
	}
	c := &kubestreamv1.Condition{Type: typ, Status: status}
	c.Reason, _ = m["reason"].(string)
	c.Message, _ = m["message"].(string)
	if og, ok := toInt64(m["observedGeneration"]); ok {
		c.ObservedGeneration = og
	}
	if ts, ok := m["lastTransitionTime"].(string); ok {
		var t metav1.Time
		if err := t.UnmarshalQueryParameter(ts); err == nil && !t.IsZero() {
			c.LastTransitionTime = timestamppb.New(t.Time)
		}
	}
	return c
}

func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case float64:
		return int64(n), true
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}
