package kafka

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/contract"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// kcatRecord is one record as kcat (librdkafka) printed it.
type kcatRecord struct {
	offset  int64
	key     string
	headers map[string]string
	value   []byte // nil for a null value (tombstone)
	ev      *kubestreamv1.Event
}

// readTopicWithKcat reads a whole single-partition topic with kcat. The
// format prints each record's offset, key, headers and value size on a line,
// then exactly that many value bytes (binary protobuf may hold newlines).
func readTopicWithKcat(t *testing.T, ctx context.Context, broker, topic string) ([]kcatRecord, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "kcat", "-C", "-b", broker, "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q",
		"-f", `%o|%k|%S|%h\n%s\n`)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kcat -t %s: %w: %s", topic, err, stderr.String())
	}
	r := bufio.NewReader(bytes.NewReader(out))
	var recs []kcatRecord
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF && line == "" {
			return recs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("kcat output: %w after %d records", err, len(recs))
		}
		f := strings.SplitN(strings.TrimSuffix(line, "\n"), "|", 4)
		if len(f) != 4 {
			return nil, fmt.Errorf("kcat line %q", line)
		}
		rec := kcatRecord{key: f[1], headers: map[string]string{}}
		rec.offset, _ = strconv.ParseInt(f[0], 10, 64)
		size, err := strconv.Atoi(f[2])
		if err != nil {
			return nil, fmt.Errorf("kcat value size %q", f[2])
		}
		// kcat prints headers as k=v joined by commas; ks-kind of a marker
		// covering several kinds holds commas itself, so a part without '='
		// continues the previous value.
		last := ""
		for _, kv := range strings.Split(f[3], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "ks-") || k == "content-type" {
				rec.headers[k] = v
				last = k
			} else if last != "" {
				rec.headers[last] += "," + kv
			}
		}
		if size >= 0 {
			rec.value = make([]byte, size)
			if _, err := io.ReadFull(r, rec.value); err != nil {
				return nil, fmt.Errorf("kcat value of offset %d: %w", rec.offset, err)
			}
			rec.ev = &kubestreamv1.Event{}
			if err := proto.Unmarshal(rec.value, rec.ev); err != nil {
				return nil, fmt.Errorf("offset %d of %s: not a kubestream.v1.Event: %w", rec.offset, topic, err)
			}
		}
		if b, err := r.ReadByte(); err != nil || b != '\n' {
			return nil, fmt.Errorf("kcat output: no newline after the value of offset %d", rec.offset)
		}
		recs = append(recs, rec)
	}
}

// kcatUntil rereads topic with kcat until done holds.
func kcatUntil(t *testing.T, ctx context.Context, broker, topic, what string, stderr *testbin.SyncBuffer, done func([]kcatRecord) bool) []kcatRecord {
	t.Helper()
	var lastErr error
	var recs []kcatRecord
	for {
		var err error
		if recs, err = readTopicWithKcat(t, ctx, broker, topic); err == nil {
			if done(recs) {
				return recs
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s on %s: read %d records (last error %v):\n%s\nkubestream stderr:\n%s", what, topic, len(recs), lastErr, describeRecords(recs), stderr.String())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func recordLine(r kcatRecord) string {
	if r.ev == nil {
		return fmt.Sprintf("%d %s null headers=%v", r.offset, r.key, r.headers)
	}
	ev := r.ev
	op := strings.TrimPrefix(ev.GetOperation().String(), "OPERATION_")
	if m := ev.GetReplay(); m != nil {
		return fmt.Sprintf("%d %s %s %s kinds=%v counts=%v", r.offset, r.key, op, strings.TrimPrefix(m.GetReason().String(), "REPLAY_REASON_"), m.GetKinds(), m.GetObjectCounts())
	}
	o, ch := ev.GetObject(), ev.GetChange()
	s := fmt.Sprintf("%d %s %s %s/%s rv=%s %s", r.offset, r.key, op, o.GetResource(), o.GetName(), o.GetResourceVersion(), strings.TrimPrefix(ch.GetContentType().String(), "CONTENT_TYPE_"))
	if p := ch.GetChangedPaths(); len(p) > 0 {
		s += " paths=" + strings.Join(p, ",")
	}
	if ch.GetFinalStateUnknown() {
		s += " final_state_unknown"
	}
	if g := ch.GetGeneric(); g != nil {
		s += fmt.Sprintf(" generic{phase=%q gen=%d observed=%d conditions=%d}", g.GetPhase(), g.GetGeneration(), g.GetObservedGeneration(), len(g.GetConditions()))
	}
	return s
}

func describeRecords(recs []kcatRecord) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintln(&b, recordLine(r))
	}
	return b.String()
}

func opIs(op kubestreamv1.Operation, uid types.UID) func([]kcatRecord) bool {
	return func(recs []kcatRecord) bool {
		return slices.ContainsFunc(recs, func(r kcatRecord) bool {
			return r.ev.GetOperation() == op && r.ev.GetObject().GetUid() == string(uid)
		})
	}
}

// TestBinaryStreamsCustomResourcesToKafka runs the built binary with a
// --kinds pattern and the Kafka sink against a real apiserver: a custom
// resource definition created after start gets its own topic and its own
// first round, its objects' changes arrive as JSON states with the kind's
// headers, and deleting the definition deletes every object of the kind.
// The records are read by kcat (librdkafka), not by our code.
func TestBinaryStreamsCustomResourcesToKafka(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat is not installed (apt-get install kcat): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := testbin.BuildForTest(t)
	const ns = "kafka-kinds"
	cp, client := testbin.StartControlPlane(ctx, t, ns)
	dyn := dynamic.NewForConfigOrDie(cp.RestConfig())
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	broker := kc.ListenAddrs()[0]

	pod, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "run", "--kubeconfig", cp.Kubeconfig, "--cluster-name", "kinds",
		"--kinds", "*.example.com,pods", "--namespace", ns, "--resync", "0", "--listen-address", "",
		"--sink", "kafka", "--kafka-brokers", broker, "--kafka-create-topics", "--kafka-topic-partitions", "1")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	stderr := &testbin.SyncBuffer{}
	cmd.Stderr = stderr
	exited := start(t, cmd)

	podRecs := kcatUntil(t, ctx, broker, "kubestream.pods", "the initial round of pods", stderr, func(recs []kcatRecord) bool {
		return slices.ContainsFunc(recs, func(r kcatRecord) bool { return r.ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END })
	})
	t.Logf("kcat -t kubestream.pods:\n%s", describeRecords(podRecs))
	if m := podRecs[0].ev.GetReplay(); m == nil || !slices.Equal(m.GetKinds(), []string{"pods"}) || m.GetReason() != kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL {
		t.Fatalf("first pods record %s, want the INITIAL round's begin covering pods only (no example.com kind exists yet)", recordLine(podRecs[0]))
	}

	// The definition comes after start: the pattern picks it up.
	const group, plural, kind = "kafka.example.com", "gizmos", "Gizmo"
	const resource = plural + "." + group
	const topic = "kubestream." + resource
	gvr := installCRD(t, ctx, dyn, group, plural, kind)
	recs := kcatUntil(t, ctx, broker, topic, "the new kind's first round", stderr, func(recs []kcatRecord) bool {
		return slices.ContainsFunc(recs, func(r kcatRecord) bool { return r.ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END })
	})

	// Live changes, each awaited so that nothing coalesces and the stream
	// is exact: g1 created, spec changed, status changed; g2 created and
	// deleted; g3 created. Then the definition goes with g1 and g3.
	res := dyn.Resource(gvr).Namespace(ns)
	create := func(name string, spec map[string]any) *unstructured.Unstructured {
		t.Helper()
		u, err := res.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/v1", "kind": kind, "metadata": map[string]any{"name": name, "namespace": ns}, "spec": spec}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		kcatUntil(t, ctx, broker, topic, name+" created", stderr, opIs(kubestreamv1.Operation_OPERATION_CREATED, u.GetUID()))
		return u
	}
	awaitRV := func(what string, u *unstructured.Unstructured) {
		t.Helper()
		kcatUntil(t, ctx, broker, topic, what, stderr, func(recs []kcatRecord) bool {
			return slices.ContainsFunc(recs, func(r kcatRecord) bool {
				return r.ev.GetOperation() == kubestreamv1.Operation_OPERATION_UPDATED && r.ev.GetObject().GetResourceVersion() == u.GetResourceVersion()
			})
		})
	}
	g1 := create("g1", map[string]any{"teeth": int64(12)})
	g1.Object["spec"] = map[string]any{"teeth": int64(14)}
	if g1, err = res.Update(ctx, g1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	awaitRV("g1's spec update", g1)
	status := fmt.Sprintf(`{"status":{"phase":"Meshing","observedGeneration":%d,"conditions":[{"type":"Ready","status":"True","reason":"Meshed","lastTransitionTime":"2026-12-01T10:00:00Z"}]}}`, g1.GetGeneration())
	if g1, err = res.Patch(ctx, "g1", types.MergePatchType, []byte(status), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	awaitRV("g1's status update", g1)
	g2 := create("g2", map[string]any{"teeth": int64(3)})
	if err := res.Delete(ctx, "g2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	kcatUntil(t, ctx, broker, topic, "g2 deleted", stderr, opIs(kubestreamv1.Operation_OPERATION_DELETED, g2.GetUID()))
	g3 := create("g3", map[string]any{"teeth": int64(7)})

	if err := dyn.Resource(crdGVR).Delete(ctx, resource, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	recs = kcatUntil(t, ctx, broker, topic, "g1 and g3 deleted with their definition", stderr, func(recs []kcatRecord) bool {
		return opIs(kubestreamv1.Operation_OPERATION_DELETED, g1.GetUID())(recs) && opIs(kubestreamv1.Operation_OPERATION_DELETED, g3.GetUID())(recs)
	})
	// Wait for the definition to be gone, then let anything late arrive.
	for {
		_, err := dyn.Resource(crdGVR).Get(ctx, resource, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("definition %s not gone: %v", resource, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	recs, err = readTopicWithKcat(t, ctx, broker, topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kcat -t %s (%d records):\n%s", topic, len(recs), describeRecords(recs))

	// The exact stream. g1 and g3 go with the definition in either order.
	type want struct {
		key string
		op  kubestreamv1.Operation
		uid types.UID
	}
	const (
		begin   = kubestreamv1.Operation_OPERATION_REPLAY_BEGIN
		end     = kubestreamv1.Operation_OPERATION_REPLAY_END
		created = kubestreamv1.Operation_OPERATION_CREATED
		updated = kubestreamv1.Operation_OPERATION_UPDATED
		deleted = kubestreamv1.Operation_OPERATION_DELETED
	)
	key := func(name string) string { return resource + "/" + ns + "/" + name }
	wants := []want{
		{"replay/0", begin, ""}, {"replay/0", end, ""},
		{key("g1"), created, g1.GetUID()}, {key("g1"), updated, g1.GetUID()}, {key("g1"), updated, g1.GetUID()},
		{key("g2"), created, g2.GetUID()}, {key("g2"), deleted, g2.GetUID()},
		{key("g3"), created, g3.GetUID()},
	}
	tail := []want{{key("g1"), deleted, g1.GetUID()}, {key("g3"), deleted, g3.GetUID()}}
	if len(recs) == len(wants)+2 && recs[len(wants)].key == key("g3") {
		tail[0], tail[1] = tail[1], tail[0]
	}
	wants = append(wants, tail...)
	if len(recs) != len(wants) {
		t.Errorf("%s holds %d records, want %d: replay begin and end, g1 created/updated/updated, g2 created/deleted, g3 created, g1 and g3 deleted", topic, len(recs), len(wants))
	}
	for i := range min(len(recs), len(wants)) {
		r, w := recs[i], wants[i]
		if r.key != w.key || r.ev.GetOperation() != w.op || r.ev.GetObject().GetUid() != string(w.uid) && w.uid != "" {
			t.Errorf("record %d: %s, want key %s %s uid %s", i, recordLine(r), w.key, w.op, w.uid)
		}
	}

	// The kind's own round: INITIAL, naming only the new kind, counting 0.
	for _, r := range recs[:min(2, len(recs))] {
		m := r.ev.GetReplay()
		if m.GetReason() != kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL || !slices.Equal(m.GetKinds(), []string{resource}) {
			t.Errorf("marker %s, want reason INITIAL and kinds [%s]", recordLine(r), resource)
		}
		if r.headers["ks-op"] != strings.ToLower(strings.TrimPrefix(r.ev.GetOperation().String(), "OPERATION_")) || r.headers["ks-kind"] != resource {
			t.Errorf("marker headers %v, want ks-op of the operation and ks-kind=%s", r.headers, resource)
		}
		if r.ev.GetOperation() == end {
			if c, ok := m.GetObjectCounts()[resource]; !ok || c != 0 {
				t.Errorf("end marker counts %v, want %s: 0", m.GetObjectCounts(), resource)
			}
		}
	}
	if len(recs) > 1 && recs[0].ev.GetReplayId() != recs[1].ev.GetReplayId() {
		t.Errorf("begin and end of different rounds: %s / %s", recs[0].ev.GetReplayId(), recs[1].ev.GetReplayId())
	}
	// The pods topic never heard of the new kind's round.
	podRecs, err = readTopicWithKcat(t, ctx, broker, "kubestream.pods")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range podRecs {
		if m := r.ev.GetReplay(); m != nil && slices.Contains(m.GetKinds(), resource) {
			t.Errorf("kubestream.pods carries a marker of %s: %s", resource, recordLine(r))
		}
	}

	// Every object record: identity, headers, a JSON state of the object.
	for _, r := range recs {
		ev := r.ev
		if ev.GetReplay() != nil {
			continue
		}
		o, ch := ev.GetObject(), ev.GetChange()
		if o.GetResource() != resource || o.GetGroup() != group || o.GetVersion() != "v1" || o.GetKind() != kind || o.GetNamespace() != ns {
			t.Errorf("%s: object ref %v", recordLine(r), o)
		}
		for h, v := range map[string]string{"ks-kind": resource, "ks-group": group, "ks-version": "v1", "ks-object-kind": kind,
			"ks-namespace": ns, "ks-cluster": "kinds", "ks-id": ev.GetId(),
			"ks-op": strings.ToLower(strings.TrimPrefix(ev.GetOperation().String(), "OPERATION_"))} {
			if r.headers[h] != v {
				t.Errorf("%s: header %s=%q, want %q (headers %v)", recordLine(r), h, r.headers[h], v, r.headers)
			}
		}
		if ch.GetContentType() != kubestreamv1.ContentType_CONTENT_TYPE_JSON {
			t.Errorf("%s: content type %s, want JSON", recordLine(r), ch.GetContentType())
		}
		states := map[string][]byte{"object": ch.GetObject(), "previous": ch.GetPrevious()}
		switch ev.GetOperation() {
		case created:
			delete(states, "previous")
		case deleted:
			delete(states, "object")
		}
		for which, state := range states {
			var obj map[string]any
			if err := json.Unmarshal(state, &obj); err != nil || obj["kind"] != kind || obj["apiVersion"] != group+"/v1" {
				t.Errorf("%s: %s state %q is not the object's JSON (%v)", recordLine(r), which, state, err)
				continue
			}
			md, _ := obj["metadata"].(map[string]any)
			if md["uid"] != o.GetUid() || md["name"] != o.GetName() {
				t.Errorf("%s: %s state names %v/%v", recordLine(r), which, md["name"], md["uid"])
			}
			if which == "object" && md["resourceVersion"] != o.GetResourceVersion() {
				t.Errorf("%s: state at resourceVersion %v, event at %s", recordLine(r), md["resourceVersion"], o.GetResourceVersion())
			}
			if _, ok := md["managedFields"]; ok {
				t.Errorf("%s: %s state keeps managedFields", recordLine(r), which)
			}
		}
		if ch.GetGeneric() == nil || ch.GetGeneric().GetContentHash() == "" {
			t.Errorf("%s: no generic summary: %v", recordLine(r), ch.GetGeneric())
		}
	}
	// The status update's summary and paths.
	if len(recs) > 4 {
		spec, stat := recs[3].ev.GetChange(), recs[4].ev.GetChange()
		if !slices.Contains(spec.GetChangedPaths(), "spec.teeth") {
			t.Errorf("spec update: changed paths %v, want spec.teeth", spec.GetChangedPaths())
		}
		if g := stat.GetGeneric(); g.GetPhase() != "Meshing" || g.GetObservedGeneration() != g1.GetGeneration() || len(g.GetConditions()) != 1 || g.GetConditions()[0].GetReason() != "Meshed" {
			t.Errorf("status update: generic summary %v", g)
		}
	}

	// The consumer contract over both topics ends with the apiserver's
	// objects and a DELETED for every uid that went.
	judge := contract.NewStreams()
	for _, r := range podRecs {
		if r.ev != nil {
			judge.Apply("kubestream.pods/0", r.ev)
		}
	}
	for _, r := range recs {
		if r.ev != nil {
			judge.Apply(topic+"/0", r.ev)
		}
	}
	held := map[string]string{}
	for uid, o := range judge.Objects() {
		held[uid] = o.Key
	}
	wantHeld := map[string]string{string(pod.UID): "pods/" + ns + "/web-0"}
	if !equalMaps(held, wantHeld) {
		t.Errorf("the consumer holds %v, want the apiserver's objects %v", held, wantHeld)
	}
	for _, u := range []*unstructured.Unstructured{g1, g2, g3} {
		if !judge.Deleted(string(u.GetUID())) {
			t.Errorf("the consumer saw no DELETED for %s (%s)", u.GetName(), u.GetUID())
		}
	}
	if d := judge.Dropped(); len(d) > 0 {
		t.Errorf("replay ends had to remove %v: kubestream missed their DELETED", d)
	}

	stop(ctx, t, cmd, exited, bytes.NewBufferString(stderr.String()))
	if !strings.Contains(stderr.String(), topic) {
		t.Errorf("stderr does not mention the new kind's topic %s:\n%s", topic, stderr.String())
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// installCRD creates a namespaced custom resource definition with a status
// subresource and waits until its kind is served.
func installCRD(t *testing.T, ctx context.Context, dyn dynamic.Interface, group, plural, kind string) schema.GroupVersionResource {
	t.Helper()
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": plural + "." + group},
		"spec": map[string]any{
			"group": group, "scope": "Namespaced",
			"names": map[string]any{"plural": plural, "singular": strings.ToLower(kind), "kind": kind, "listKind": kind + "List"},
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"subresources": map[string]any{"status": map[string]any{}},
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object", "x-kubernetes-preserve-unknown-fields": true,
				}},
			}},
		},
	}}
	if _, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create CRD %s.%s: %v", plural, group, err)
	}
	gvr := schema.GroupVersionResource{Group: group, Version: "v1", Resource: plural}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			return gvr
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRD %s.%s not served within 30s: %v", plural, group, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBinaryResumesCustomResourcesOnKafka: the built binary keeps its
// positions in the compacted state topic; stopped, it misses a custom
// resource deleted, one changed, and a whole definition deleted. The next
// start sends exactly the difference, read back with kcat: DELETED and
// UPDATED on the kind's topic inside a RESUME round, nothing for the
// unchanged object, and DELETED for the vanished kind's object on its own
// topic, with the headers every event of that kind carries.
func TestBinaryResumesCustomResourcesOnKafka(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat is not installed (apt-get install kcat): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := testbin.BuildForTest(t)
	const ns = "kafka-resume"
	cp, _ := testbin.StartControlPlane(ctx, t, ns)
	dyn := dynamic.NewForConfigOrDie(cp.RestConfig())
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	broker := kc.ListenAddrs()[0]

	const group = "resume.example.com"
	alphas := installCRD(t, ctx, dyn, group, "alphas", "Alpha")
	betas := installCRD(t, ctx, dyn, group, "betas", "Beta")
	mk := func(gvr schema.GroupVersionResource, kind, name string) *unstructured.Unstructured {
		t.Helper()
		u, err := dyn.Resource(gvr).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/v1", "kind": kind, "metadata": map[string]any{"name": name, "namespace": ns}, "spec": map[string]any{"n": int64(1)}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	a1, a2, a3, b1 := mk(alphas, "Alpha", "a1"), mk(alphas, "Alpha", "a2"), mk(alphas, "Alpha", "a3"), mk(betas, "Beta", "b1")
	const alphaTopic, betaTopic = "kubestream.alphas." + group, "kubestream.betas." + group
	home := t.TempDir()
	runOnce := func() (*exec.Cmd, <-chan error, *testbin.SyncBuffer) {
		cmd := exec.Command(bin, "run", "--kubeconfig", cp.Kubeconfig, "--cluster-name", "resume",
			"--kinds", "*.example.com", "--namespace", ns, "--resync", "0", "--listen-address", "",
			"--sink", "kafka", "--kafka-brokers", broker, "--kafka-create-topics", "--kafka-topic-partitions", "1")
		cmd.Env = append(os.Environ(), "HOME="+home)
		stderr := &testbin.SyncBuffer{}
		cmd.Stderr = stderr
		return cmd, start(t, cmd), stderr
	}
	roundEnds := func(reason kubestreamv1.ReplayReason) func([]kcatRecord) bool {
		return func(recs []kcatRecord) bool {
			return slices.ContainsFunc(recs, func(r kcatRecord) bool {
				return r.ev.GetOperation() == kubestreamv1.Operation_OPERATION_REPLAY_END && r.ev.GetReplay().GetReason() == reason
			})
		}
	}

	cmd, exited, stderr := runOnce()
	kcatUntil(t, ctx, broker, alphaTopic, "the first run's initial round", stderr, roundEnds(kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL))
	kcatUntil(t, ctx, broker, betaTopic, "the first run's initial round", stderr, roundEnds(kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL))
	stop(ctx, t, cmd, exited, bytes.NewBufferString(stderr.String()))
	firstAlpha, err := readTopicWithKcat(t, ctx, broker, alphaTopic)
	if err != nil {
		t.Fatal(err)
	}
	firstBeta, err := readTopicWithKcat(t, ctx, broker, betaTopic)
	if err != nil {
		t.Fatal(err)
	}

	// While stopped.
	if err := dyn.Resource(alphas).Namespace(ns).Delete(ctx, "a1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	a2.Object["spec"] = map[string]any{"n": int64(2)}
	if a2, err = dyn.Resource(alphas).Namespace(ns).Update(ctx, a2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := dyn.Resource(crdGVR).Delete(ctx, "betas."+group, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := dyn.Resource(crdGVR).Get(ctx, "betas."+group, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("betas definition not gone: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	cmd, exited, stderr = runOnce()
	alphaRecs := kcatUntil(t, ctx, broker, alphaTopic, "the resume round", stderr, roundEnds(kubestreamv1.ReplayReason_REPLAY_REASON_RESUME))
	betaRecs := kcatUntil(t, ctx, broker, betaTopic, "b1's DELETED", stderr, opIs(kubestreamv1.Operation_OPERATION_DELETED, b1.GetUID()))
	time.Sleep(time.Second)
	stop(ctx, t, cmd, exited, bytes.NewBufferString(stderr.String()))
	if alphaRecs, err = readTopicWithKcat(t, ctx, broker, alphaTopic); err != nil {
		t.Fatal(err)
	}
	if betaRecs, err = readTopicWithKcat(t, ctx, broker, betaTopic); err != nil {
		t.Fatal(err)
	}
	t.Logf("kcat -t %s:\n%s", alphaTopic, describeRecords(alphaRecs))
	t.Logf("kcat -t %s:\n%s", betaTopic, describeRecords(betaRecs))

	second := alphaRecs[len(firstAlpha):]
	var ops []string
	for _, r := range second {
		op := strings.TrimPrefix(r.ev.GetOperation().String(), "OPERATION_")
		if r.ev.GetReplay() == nil {
			op += " " + r.ev.GetObject().GetName()
		}
		ops = append(ops, op)
	}
	if len(second) != 4 || second[0].ev.GetReplay().GetReason() != kubestreamv1.ReplayReason_REPLAY_REASON_RESUME ||
		second[3].ev.GetOperation() != kubestreamv1.Operation_OPERATION_REPLAY_END ||
		!slices.Contains(ops, "DELETED a1") || !slices.Contains(ops, "UPDATED a2") {
		t.Errorf("second run on %s: %v, want a RESUME round holding DELETED a1 and UPDATED a2 only (nothing for a3)", alphaTopic, ops)
	}
	for _, r := range second {
		if r.ev.GetObject().GetUid() == string(a3.GetUID()) {
			t.Errorf("second run sent %s for a3, which did not change", recordLine(r))
		}
		if r.ev.GetObject().GetUid() == string(a2.GetUID()) && r.ev.GetObject().GetResourceVersion() != a2.GetResourceVersion() {
			t.Errorf("a2's UPDATED at rv %s, the apiserver's is %s", r.ev.GetObject().GetResourceVersion(), a2.GetResourceVersion())
		}
	}
	afterFirst := betaRecs[len(firstBeta):]
	if len(afterFirst) != 1 || afterFirst[0].ev.GetOperation() != kubestreamv1.Operation_OPERATION_DELETED || afterFirst[0].ev.GetObject().GetUid() != string(b1.GetUID()) {
		t.Errorf("second run on %s: %s, want exactly b1's DELETED", betaTopic, describeRecords(afterFirst))
	} else {
		r := afterFirst[0]
		if !r.ev.GetChange().GetFinalStateUnknown() || r.key != "betas."+group+"/"+ns+"/b1" || r.headers["ks-kind"] != "betas."+group {
			t.Errorf("b1's DELETED: %s key %s headers %v, want final_state_unknown, key betas.%s/%s/b1, ks-kind betas.%s", recordLine(r), r.key, r.headers, group, ns, group)
		}
		for _, h := range []string{"ks-group", "ks-version", "ks-object-kind"} {
			if _, ok := r.headers[h]; !ok {
				t.Errorf("b1's DELETED (its definition deleted while kubestream was stopped) lacks header %s, which b1's SNAPSHOT on the same topic carried (%v); headers %v: a consumer filtering on the kind's headers would drop this delete",
					h, firstBeta[1].headers[h], r.headers)
			}
		}
	}

	judge := contract.NewStreams()
	for topic, recs := range map[string][]kcatRecord{alphaTopic: alphaRecs, betaTopic: betaRecs} {
		for _, r := range recs {
			if r.ev != nil {
				judge.Apply(topic+"/0", r.ev)
			}
		}
	}
	held := map[string]string{}
	for uid, o := range judge.Objects() {
		held[uid] = o.Key
	}
	want := map[string]string{string(a2.GetUID()): "alphas." + group + "/" + ns + "/a2", string(a3.GetUID()): "alphas." + group + "/" + ns + "/a3"}
	if !equalMaps(held, want) {
		t.Errorf("the consumer holds %v, want the apiserver's objects %v", held, want)
	}
	for _, u := range []*unstructured.Unstructured{a1, b1} {
		if !judge.Deleted(string(u.GetUID())) {
			t.Errorf("the consumer saw no DELETED for %s", u.GetName())
		}
	}
}
