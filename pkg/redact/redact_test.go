package redact_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/redact"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]redact.Policy{"full": redact.Full, "HASH": redact.Hash, " keys ": redact.Keys} {
		got, err := redact.Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := redact.Parse("mask"); err == nil || err.Error() != `--configmap-data "mask" is not a policy: use one of full, hash, keys` {
		t.Errorf("Parse(mask) error = %v", err)
	}
}

// randomValue is long and random enough that finding it in an event can
// only mean it leaked.
func randomValue(r *rand.Rand, binary bool) string {
	n := 12 + r.IntN(200)
	b := make([]byte, n)
	for i := range b {
		if binary {
			b[i] = byte(r.IntN(256))
		} else {
			b[i] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=:/ .\n"[r.IntN(67)]
		}
	}
	return string(b)
}

func randomConfigMap(r *rand.Rand, uid, rv string, values *[]string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app-config", UID: types.UID("u" + uid), ResourceVersion: rv,
		Labels: map[string]string{"app": "web"}}}
	for i := range r.IntN(5) {
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		v := randomValue(r, false)
		cm.Data[fmt.Sprintf("key-%d.properties", i)] = v
		*values = append(*values, v)
	}
	for i := range r.IntN(3) {
		if cm.BinaryData == nil {
			cm.BinaryData = map[string][]byte{}
		}
		v := randomValue(r, true)
		cm.BinaryData[fmt.Sprintf("blob-%d", i)] = []byte(v)
		*values = append(*values, v)
	}
	if r.IntN(2) == 0 {
		// kubectl apply keeps the whole object, values included, here.
		// Its hash is of the whole annotation: the value is listed in
		// full form so the hash check below finds it.
		v := `{"data":{"x":"` + randomValue(r, false) + `"}}`
		cm.Annotations = map[string]string{corev1.LastAppliedConfigAnnotation: v}
		*values = append(*values, v)
	}
	return cm
}

// encodings are every form of an event a consumer can receive or derive:
// the wire bytes, protojson, and the object states as sent.
func encodings(t *testing.T, ev *kubestreamv1.Event) [][]byte {
	t.Helper()
	wire, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	js, err := protojson.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{wire, js, ev.GetChange().GetObject(), ev.GetChange().GetPrevious()}
}

// appears reports whether a value appears in an event's encodings: as
// stored, as base64 (JSON encodes binaryData so, protojson encodes bytes
// fields so), or escaped as a JSON string.
func appears(forms [][]byte, v string) bool {
	quoted, _ := json.Marshal(v) // how a JSON state carries a string
	needles := [][]byte{[]byte(v), []byte(base64.StdEncoding.EncodeToString([]byte(v))), quoted[1 : len(quoted)-1]}
	for _, f := range forms {
		for _, n := range needles {
			if bytes.Contains(f, n) {
				return true
			}
		}
	}
	return false
}

func hashOf(v string) string {
	s := sha256.Sum256([]byte(v))
	return hex.EncodeToString(s[:])
}

// TestNoValueInAnyField builds created, updated, deleted and snapshot events
// of random config maps, cached compact and decoded, in both content types,
// and looks for every value in every encoding of the event: with hash and
// keys none may appear; with full every one must (so the search works).
func TestNoValueInAnyField(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 4))
	policies := []redact.Policy{redact.Full, redact.Hash, redact.Keys}
	cts := []kubestreamv1.ContentType{kubestreamv1.ContentType_CONTENT_TYPE_PROTOBUF, kubestreamv1.ContentType_CONTENT_TYPE_JSON}
	ops := []change.Op{change.Created, change.Updated, change.Deleted, change.Snapshot}
	for i := range 300 {
		policy, ct, op := policies[i%3], cts[(i/3)%2], ops[(i/6)%4]
		var prevValues, nextValues []string
		prev := randomConfigMap(r, fmt.Sprint(i), "10", &prevValues)
		next := randomConfigMap(r, fmt.Sprint(i), "11", &nextValues)
		var prevObj, nextObj change.Object = prev, next
		if r.IntN(2) == 0 {
			p, _ := change.Compacted(prev)
			n, _ := change.Compacted(next)
			prevObj, nextObj = p.(change.Object), n.(change.Object)
		}
		c := &change.Change{Kind: kinds.ConfigMaps, Op: op, ObservedAt: time.Unix(1, 0)}
		var values []string
		switch op {
		case change.Created, change.Snapshot:
			c.Object, values = nextObj, nextValues
		case change.Updated:
			c.Object, c.Previous, values = nextObj, prevObj, append(prevValues, nextValues...)
		case change.Deleted:
			c.Previous, values = prevObj, prevValues
		}
		tr := &event.Translator{Cluster: "c", ContentType: ct, ConfigMapData: policy}
		ev, err := tr.Translate(c)
		if err != nil {
			t.Fatal(err)
		}
		forms := encodings(t, ev)
		for _, v := range values {
			leaked := appears(forms, v)
			if policy == redact.Full && !leaked {
				t.Fatalf("case %d (%s, %s, %s): value %q not found with full: the search is broken", i, policy, ct, op, v)
			}
			if policy != redact.Full && leaked {
				t.Fatalf("case %d (%s, %s, %s): value %q leaked into the event", i, policy, ct, op, v)
			}
			if policy == redact.Hash && !appears(forms, hashOf(v)) {
				t.Fatalf("case %d (%s, %s, %s): no SHA-256 of value %q in the event", i, policy, ct, op, v)
			}
		}
		sum := ev.GetChange().GetConfigMap()
		if sum.GetDataPolicy() != policy.Proto() {
			t.Fatalf("case %d: summary data_policy = %v, want %v", i, sum.GetDataPolicy(), policy.Proto())
		}
		// Sizes are the real ones, whatever the policy.
		state := next
		if op == change.Deleted {
			state = prev
		}
		for k, v := range state.Data {
			if sum.GetValueSizes()[k] != int64(len(v)) {
				t.Fatalf("case %d: size of %s = %d, want %d", i, k, sum.GetValueSizes()[k], len(v))
			}
		}
		if policy == redact.Keys && sum.GetDataHash() != "" {
			t.Fatalf("case %d: keys policy kept data_hash", i)
		}
	}
}

// TestCachedObjectUntouched: the informer cache's object is shared; redaction
// must copy.
func TestCachedObjectUntouched(t *testing.T) {
	cm := &corev1.ConfigMap{Data: map[string]string{"a": "secret"}, BinaryData: map[string][]byte{"b": []byte("bin")},
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: "{}", "other": "x"}}}
	for _, p := range []redact.Policy{redact.Hash, redact.Keys} {
		out := redact.ConfigMap(cm, p)
		if cm.Data["a"] != "secret" || string(cm.BinaryData["b"]) != "bin" || cm.Annotations[corev1.LastAppliedConfigAnnotation] != "{}" {
			t.Fatalf("%s modified the cached object: %+v", p, cm)
		}
		if out.Annotations["other"] != "x" {
			t.Fatalf("%s dropped an unrelated annotation", p)
		}
		if _, ok := out.Data["a"]; !ok {
			t.Fatalf("%s dropped a key", p)
		}
	}
	if got := redact.ConfigMap(cm, redact.Keys).Data["a"]; got != "" {
		t.Fatalf("keys kept value %q", got)
	}
	if got := redact.ConfigMap(cm, redact.Hash).Data["a"]; got != hashOf("secret") {
		t.Fatalf("hash gave %q", got)
	}
}
