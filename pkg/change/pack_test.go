package change_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubestream/kubestream/pkg/change"
	"github.com/kubestream/kubestream/test/bench"
)

func newPod() runtime.Object { return &corev1.Pod{} }

// benchPod is a pod as the apiserver would send it: its own name, uid and
// resourceVersion, the rest like its siblings'.
func benchPod(t testing.TB, i int) (*corev1.Pod, []byte) {
	t.Helper()
	p := bench.Pod("shop", fmt.Sprintf("checkout-7d9f8c6b5d-%05d", i))
	p.UID = types.UID(fmt.Sprintf("5f1c%04x-9a2b-4c3d-8e4f-%012x", i, i*7919))
	p.ResourceVersion = fmt.Sprint(100000 + 3*i)
	p.Annotations = map[string]string{"kubestream.io/seq": fmt.Sprint(i)}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return p, raw
}

func TestCompressionStartsAfterTheThresholdAndRoundTrips(t *testing.T) {
	const after = 8
	cd := change.ProtoCodec("Pod", newPod).WithCompression(after, 0)
	var rawTotal, storedTotal int
	for i := 0; i < 200; i++ {
		pod, raw := benchPod(t, i)
		c, err := cd.FromProto(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.Bytes(), raw) {
			t.Fatalf("pod %d: Bytes differ from the encoding it was built from", i)
		}
		if i < after-1 && c.StoredBytes() != len(raw) {
			t.Fatalf("pod %d: compressed (%d of %d bytes) before the kind had %d objects", i, c.StoredBytes(), len(raw), after)
		}
		full, err := change.Full(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := full.(*corev1.Pod); got.Name != pod.Name || got.Spec.Containers[0].Image != pod.Spec.Containers[0].Image {
			t.Fatalf("pod %d decoded as %s with image %s", i, got.Name, got.Spec.Containers[0].Image)
		}
		if i >= after {
			rawTotal += len(raw)
			storedTotal += c.StoredBytes()
		}
	}
	// Siblings share most of their bytes: the dictionary of earlier pods
	// must shrink them several times over.
	if storedTotal*4 > rawTotal {
		t.Fatalf("compressed pods keep %d of %d bytes, want at most a quarter", storedTotal, rawTotal)
	}
	t.Logf("%d bytes per pod kept, of %d", storedTotal/(200-after), rawTotal/(200-after))
}

func TestWithoutCompressionTheEncodingIsKeptAsItCame(t *testing.T) {
	cd := change.ProtoCodec("Pod", newPod)
	for i := 0; i < 50; i++ {
		_, raw := benchPod(t, i)
		c, err := cd.FromProto(raw)
		if err != nil {
			t.Fatal(err)
		}
		if c.StoredBytes() != len(raw) || !bytes.Equal(c.Bytes(), raw) {
			t.Fatalf("pod %d kept as %d bytes of %d", i, c.StoredBytes(), len(raw))
		}
	}
}

func TestListItemsAreCompressedAndDoNotShareTheResponse(t *testing.T) {
	cd := change.ProtoCodec("Pod", newPod).WithCompression(4, 0)
	list := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "7"}}
	var raws [][]byte
	for i := 0; i < 40; i++ {
		p, raw := benchPod(t, i)
		list.Items = append(list.Items, *p)
		raws = append(raws, raw)
	}
	body, err := list.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := cd.ListFromProto(body)
	if err != nil {
		t.Fatal(err)
	}
	clear(body) // the response's buffer is reused by the client
	if len(got.Items) != len(raws) || got.ResourceVersion != "7" {
		t.Fatalf("%d items at %q", len(got.Items), got.ResourceVersion)
	}
	for i, item := range got.Items {
		if !bytes.Equal(item.(*change.Compact).Bytes(), raws[i]) {
			t.Fatalf("item %d changed with the response's buffer", i)
		}
	}
}

func TestCompressedObjectsDecodeConcurrently(t *testing.T) {
	cd := change.ProtoCodec("Pod", newPod).WithCompression(2, 0)
	var cs []*change.Compact
	var raws [][]byte
	for i := 0; i < 64; i++ {
		_, raw := benchPod(t, i)
		c, err := cd.FromProto(raw)
		if err != nil {
			t.Fatal(err)
		}
		cs, raws = append(cs, c), append(raws, raw)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < 20; round++ {
				for i, c := range cs {
					if !bytes.Equal(c.Bytes(), raws[i]) {
						errs <- fmt.Errorf("pod %d decompressed wrongly", i)
						return
					}
				}
			}
		}()
		// Encoding goes on meanwhile, as the watch keeps delivering.
		_, raw := benchPod(t, 1000+w)
		if _, err := cd.FromProto(raw); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestJSONObjectsAreCompressedToo(t *testing.T) {
	cd := change.JSONCodec("Widget").WithCompression(4, 0)
	for i := 0; i < 30; i++ {
		raw := []byte(fmt.Sprintf(`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w-%d","namespace":"shop","uid":"u-%d","resourceVersion":"%d"},"spec":{"size":"large","colour":"blue","replicas":3}}`, i, i, 10+i))
		c, err := cd.FromJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.Bytes(), raw) || c.GetName() != fmt.Sprintf("w-%d", i) {
			t.Fatalf("widget %d: %s", i, c.Bytes())
		}
		if i >= 4 && c.StoredBytes() >= len(raw)/2 {
			t.Fatalf("widget %d kept as %d of %d bytes", i, c.StoredBytes(), len(raw))
		}
	}
}

func TestObjectsAreCompressedOnceColdUnlessRetired(t *testing.T) {
	const cold = 50 * time.Millisecond
	cd := change.ProtoCodec("Pod", newPod).WithCompression(1, cold)
	var kept, retired []*change.Compact
	var raws [][]byte
	for i := 0; i < 20; i++ {
		_, raw := benchPod(t, i)
		c, err := cd.FromProto(raw)
		if err != nil {
			t.Fatal(err)
		}
		if c.StoredBytes() != len(raw) {
			t.Fatalf("pod %d compressed as soon as it was cached", i)
		}
		if i%2 == 1 {
			change.Retire(c) // replaced by a newer state, say
			retired = append(retired, c)
			continue
		}
		kept, raws = append(kept, c), append(raws, raw)
	}
	// No further objects come: the timer compresses the cold ones.
	deadline := time.Now().Add(10 * time.Second)
	for kept[len(kept)-1].StoredBytes() == len(raws[len(raws)-1]) && time.Now().Before(deadline) {
		time.Sleep(cold)
	}
	for i, c := range kept {
		if c.StoredBytes()*4 > len(raws[i]) || !bytes.Equal(c.Bytes(), raws[i]) {
			t.Fatalf("cold pod %d: %d stored bytes of %d", i, c.StoredBytes(), len(raws[i]))
		}
	}
	for i, c := range retired {
		if c.StoredBytes() < 500 {
			t.Fatalf("retired pod %d was compressed (%d bytes)", i, c.StoredBytes())
		}
	}
}
