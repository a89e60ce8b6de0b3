// Package helm checks the chart in deploy/helm/kubestream with the helm
// binary pinned in hack/tools: lint, rendering of several value sets, the
// values it refuses, a server-side dry run against a real kube-apiserver,
// and the rendered ServiceAccount's effective permissions there.
package helm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(filepath.Dir(wd))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found above %s: %v", wd, err)
	}
	return root
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "deploy", "helm", "kubestream") }

var helmBuild struct {
	once sync.Once
	path string
	err  error
}

// helmBin builds helm into the cache on first use (hack/build-helm.sh).
func helmBin(t testing.TB) string {
	t.Helper()
	helmBuild.once.Do(func() {
		var stderr bytes.Buffer
		cmd := exec.Command("bash", filepath.Join(repoRoot(t), "hack", "build-helm.sh"))
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			helmBuild.err = fmt.Errorf("hack/build-helm.sh: %w\n%s", err, stderr.String())
			return
		}
		helmBuild.path = strings.TrimSpace(string(out))
	})
	if helmBuild.err != nil {
		t.Fatal(helmBuild.err)
	}
	return helmBuild.path
}

// helm runs the pinned helm and returns stdout, and stderr in the error.
func helm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Dir = repoRoot(t)
	// A home of its own: no repositories or plugins of the machine's user.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// valueSet is a release rendered from the chart.
type valueSet struct {
	name      string // release name
	namespace string
	files     []string // under testdata/
	set       []string // --set arguments
}

func (v valueSet) args(t testing.TB) []string {
	args := []string{v.name, chartDir(t), "--namespace", v.namespace}
	for _, f := range v.files {
		args = append(args, "--values", filepath.Join(repoRoot(t), "test", "helm", "testdata", f))
	}
	for _, s := range v.set {
		args = append(args, "--set", s)
	}
	return args
}

// The value sets every test renders: the defaults (with the one value they
// need) and the files in testdata/.
var valueSets = []valueSet{
	{name: "defaults", namespace: "ks-defaults", set: []string{"sink.kafka.brokers={kafka:9092}"}},
	{name: "kafka", namespace: "ks-kafka", files: []string{"kafka-tls-sasl.yaml"}},
	{name: "nats", namespace: "ks-nats", files: []string{"nats-creds.yaml"}},
	{name: "single", namespace: "ks-single", files: []string{"single-stdout.yaml"}},
	// Kinds beyond the four the binary streams today: rendered and checked
	// on the apiserver, not run (see TestRenderedArgsAreRunFlags).
	{name: "crd-kinds", namespace: "ks-crd", files: []string{"crd-kinds.yaml"}},
}

// render runs helm template and returns the rendered YAML.
func render(t testing.TB, v valueSet) string {
	t.Helper()
	out, err := helm(t, append([]string{"template"}, v.args(t)...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// objects decodes a multi-document YAML stream.
func objects(t testing.TB, manifest string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decode rendered manifest: %v\n%s", err, manifest)
		}
		if obj == nil {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
}

// find returns the one object of a kind, or nil.
func find(t testing.TB, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	var found *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			if found != nil {
				t.Fatalf("more than one %s rendered", kind)
			}
			found = o
		}
	}
	return found
}
