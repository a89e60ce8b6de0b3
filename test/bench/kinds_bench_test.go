package bench

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// The benchmarks in this file put a custom resource (a discovered kind,
// cached and sent as JSON) next to Pods (a typed kind, cached and sent as
// Kubernetes protobuf), along the path every watch event takes: the
// apiserver's encoding decoded into the cache's compact form
// (Codec.FromProto / Codec.FromJSON), the change translated into an event,
// the event encoded for the broker. Both objects come as the apiserver
// sends them, with one managedFields entry that the compact form drops.

// certificates is a discovered kind as pkg/discover builds it.
var certificates = kinds.Discovered(schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"}, "certificates", true, false)

// managedFields is what the apiserver sends with every object (and
// kubestream strips): one manager's field set.
func managedFields(fields string) []metav1.ManagedFieldsEntry {
	t := metav1.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return []metav1.ManagedFieldsEntry{{
		Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
		Time: &t, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)},
	}}
}

// wirePod is a pod's protobuf as the apiserver sends it in a watch event.
func wirePod(name, uid, rv string, step int) []byte {
	p := ServerPod("shop", name, uid, rv)
	p.ManagedFields = managedFields(`{"f:metadata":{"f:labels":{".":{},"f:app.kubernetes.io/name":{},"f:team":{}},"f:ownerReferences":{}},"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{}}}}}`)
	if step > 0 {
		p.Annotations["bench.kubestream.io/step"] = strconv.Itoa(step)
		p.Labels["version"] = "v" + strconv.Itoa(step+1)
	}
	raw, err := p.Marshal()
	if err != nil {
		panic(err)
	}
	return raw
}

// Certificate returns a cert-manager Certificate as the apiserver stores
// it: labels, an owner (an Ingress shim), a spec with DNS names, issuer and
// private key settings, and a status with a Ready condition, revision and
// renewal times. About 1.4 KB of JSON without managed fields, the size of
// ServerPod in JSON.
func Certificate(namespace, name, uid, rv string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cert-manager.io/v1",
		"kind":       "Certificate",
		"metadata": map[string]any{
			"namespace": namespace, "name": name, "uid": uid, "resourceVersion": rv, "generation": int64(1),
			"creationTimestamp": "2026-01-02T03:04:05Z",
			"labels": map[string]any{
				"app.kubernetes.io/name": "checkout", "app.kubernetes.io/part-of": "shop", "team": "payments",
			},
			"ownerReferences": []any{map[string]any{
				"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "checkout",
				"uid": "5a0d6e3c-7b1f-4d2e-9c8a-1f2e3d4c5b6a", "controller": true, "blockOwnerDeletion": true,
			}},
		},
		"spec": map[string]any{
			"secretName": name + "-tls",
			"commonName": "checkout.shop.example.com",
			"dnsNames":   []any{"checkout.shop.example.com", "www.checkout.shop.example.com", "api.checkout.shop.example.com"},
			"duration":   "2160h0m0s", "renewBefore": "360h0m0s",
			"issuerRef":      map[string]any{"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "letsencrypt-prod"},
			"privateKey":     map[string]any{"algorithm": "ECDSA", "size": int64(256), "rotationPolicy": "Always", "encoding": "PKCS1"},
			"usages":         []any{"digital signature", "key encipherment", "server auth"},
			"secretTemplate": map[string]any{"labels": map[string]any{"app.kubernetes.io/name": "checkout"}},
		},
		"status": map[string]any{
			"conditions": []any{map[string]any{
				"type": "Ready", "status": "True", "reason": "Ready", "message": "Certificate is up to date and has not expired",
				"lastTransitionTime": "2026-01-02T03:05:00Z", "observedGeneration": int64(1),
			}},
			"notBefore": "2026-01-02T02:05:00Z", "notAfter": "2026-04-02T02:05:00Z", "renewalTime": "2026-03-18T02:05:00Z",
			"revision": int64(1),
		},
	}}
	return u
}

// wireCertificate is a certificate's JSON as the apiserver sends it.
func wireCertificate(name, uid, rv string, step int) []byte {
	u := Certificate("shop", name, uid, rv)
	mf := managedFields(`{"f:metadata":{"f:labels":{".":{},"f:app.kubernetes.io/name":{},"f:team":{}},"f:ownerReferences":{}},"f:spec":{"f:dnsNames":{},"f:issuerRef":{".":{},"f:kind":{},"f:name":{}},"f:secretName":{}}}`)
	mf[0].APIVersion = "cert-manager.io/v1"
	u.SetManagedFields(mf)
	if step > 0 {
		u.SetAnnotations(map[string]string{"bench.kubestream.io/step": strconv.Itoa(step)})
		labels := u.GetLabels()
		labels["version"] = "v" + strconv.Itoa(step+1)
		u.SetLabels(labels)
	}
	raw, err := json.Marshal(u.Object)
	if err != nil {
		panic(err)
	}
	return raw
}

// benchKind is one side of the comparison.
type benchKind struct {
	name   string
	kind   kinds.Kind
	codec  *change.Codec
	decode func(cd *change.Codec, raw []byte) (*change.Compact, error)
	wire   func(name, uid, rv string, step int) []byte
}

func benchKinds() []benchKind {
	return []benchKind{
		{"pods", kinds.Pods, change.ProtoCodec(kinds.Pods.ItemKind(), kinds.Pods.NewObject), (*change.Codec).FromProto, wirePod},
		{"certificates", certificates, change.JSONCodec(certificates.GVK.Kind), (*change.Codec).FromJSON, wireCertificate},
	}
}

// watchEvent is one watch event as the informer gets it: the object's wire
// encoding, and the operation.
type watchEvent struct {
	op   change.Op
	key  int // object index, to find the cached previous state
	wire []byte
}

// BenchmarkKindEvents1000 is the CPU of 1000 events of one kind (ns/op is
// per 1000 events; B/op and allocs/op too): each event's object decoded
// from the apiserver's encoding into the compact cache form, the change
// (with the previous state from the cache) translated, the event encoded.
// The events are creates, updates (an annotation and a label changed) and
// deletes, a third each, of distinct objects, so nothing coalesces.
func BenchmarkKindEvents1000(b *testing.B) {
	const events = 1000
	for _, bk := range benchKinds() {
		b.Run(bk.name, func(b *testing.B) {
			var evs []watchEvent
			for i := 0; len(evs) < events; i++ {
				name := "checkout-7d9f8c6b5d-" + strconv.Itoa(i)
				uid := fmt.Sprintf("%08d-7b1f-4d2e-9c8a-1f2e3d4c5b6a", i)
				v1, v2 := bk.wire(name, uid, "1001", 0), bk.wire(name, uid, "1002", 1)
				evs = append(evs, watchEvent{change.Created, i, v1}, watchEvent{change.Updated, i, v2}, watchEvent{change.Deleted, i, v2})
			}
			evs = evs[:events]
			cached := make(map[int]change.Object, events)
			now := time.Unix(1_750_000_000, 0)
			var wireBytes int
			b.ReportAllocs()
			for b.Loop() {
				wireBytes = 0
				for _, we := range evs {
					obj, err := bk.decode(bk.codec, we.wire)
					if err != nil {
						b.Fatal(err)
					}
					c := &change.Change{Kind: bk.kind, Op: we.op, ObservedAt: now}
					switch we.op {
					case change.Created:
						c.Object = obj
						cached[we.key] = obj
					case change.Updated:
						c.Object, c.Previous = obj, cached[we.key]
						cached[we.key] = obj
					case change.Deleted:
						c.Previous = obj
						delete(cached, we.key)
					}
					ev, err := translator.Translate(c)
					if err != nil {
						b.Fatal(err)
					}
					out, err := proto.Marshal(ev)
					if err != nil {
						b.Fatal(err)
					}
					wireBytes += len(out)
				}
			}
			b.ReportMetric(float64(wireBytes)/events, "event-bytes")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/events, "ns/event")
		})
	}
}

// BenchmarkKindTranslate isolates translation and event encoding per
// operation (the decode into the cache excluded), as BenchmarkTranslatePod
// does for pods alone.
func BenchmarkKindTranslate(b *testing.B) {
	for _, bk := range benchKinds() {
		v1, err := bk.decode(bk.codec, bk.wire("web", "uid-web", "1001", 0))
		if err != nil {
			b.Fatal(err)
		}
		v2, err := bk.decode(bk.codec, bk.wire("web", "uid-web", "1002", 1))
		if err != nil {
			b.Fatal(err)
		}
		now := time.Unix(1_750_000_000, 0)
		for _, c := range []*change.Change{
			{Kind: bk.kind, Op: change.Created, Object: v1, ObservedAt: now},
			{Kind: bk.kind, Op: change.Updated, Object: v2, Previous: v1, ObservedAt: now},
			{Kind: bk.kind, Op: change.Deleted, Previous: v2, ObservedAt: now},
		} {
			b.Run(bk.name+"/"+c.Op.String(), func(b *testing.B) {
				b.ReportAllocs()
				var size int
				for b.Loop() {
					ev, err := translator.Translate(c)
					if err != nil {
						b.Fatal(err)
					}
					out, err := proto.Marshal(ev)
					if err != nil {
						b.Fatal(err)
					}
					size = len(out)
				}
				b.ReportMetric(float64(size), "wire-bytes")
			})
		}
	}
}

// BenchmarkCachedKindHeap measures the Go heap one cached object holds in
// the informer's indexer (with the namespace index), in the compact form
// built from the apiserver's encoding: protobuf for pods, JSON for the
// custom resource. For comparison, "certificates-unstructured" keeps the
// decoded Unstructured (managed fields stripped), what a dynamic informer
// caches. heap-B/object is the result; ns/op is the cost of decoding and
// storing one object.
func BenchmarkCachedKindHeap(b *testing.B) {
	measure := func(b *testing.B, add func(i int, store cache.Indexer)) {
		store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		b.ReportAllocs()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := 0; b.Loop(); i++ {
			add(i, store)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(store.ListKeys())), "heap-B/object")
		runtime.KeepAlive(store)
	}
	name := func(i int) (string, string) {
		return "checkout-7d9f8c6b5d-" + strconv.Itoa(i), fmt.Sprintf("%08d-7b1f-4d2e-9c8a-1f2e3d4c5b6a", i)
	}
	for _, bk := range benchKinds() {
		b.Run(bk.name+"-compact", func(b *testing.B) {
			var raw int
			measure(b, func(i int, store cache.Indexer) {
				// Distinct names and uids, as a real list has; building the
				// wire form is not timed.
				b.StopTimer()
				n, uid := name(i)
				wire := bk.wire(n, uid, strconv.Itoa(100000+i), 0)
				b.StartTimer()
				c, err := bk.decode(bk.codec, wire)
				if err != nil {
					b.Fatal(err)
				}
				raw = len(c.Bytes())
				if err := store.Add(c); err != nil {
					b.Fatal(err)
				}
			})
			b.ReportMetric(float64(raw), "raw-B/object")
		})
	}
	b.Run("certificates-unstructured", func(b *testing.B) {
		measure(b, func(i int, store cache.Indexer) {
			n, uid := name(i)
			b.StopTimer()
			wire := wireCertificate(n, uid, strconv.Itoa(100000+i), 0)
			b.StartTimer()
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(wire); err != nil {
				b.Fatal(err)
			}
			unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
			if err := store.Add(u); err != nil {
				b.Fatal(err)
			}
		})
	})
}
