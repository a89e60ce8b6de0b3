// Package deploy checks kubestream's packaging without a container engine:
// the Dockerfile's build command runs here against a copy of the build
// context, the manifests in deploy/ go through a real kube-apiserver, and the
// binary the image would ship runs with the Deployment's arguments under the
// service account's RBAC.
package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

// repoRoot is the module root: two levels above this package.
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

func readFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeFile unmarshals a single-document YAML file of the repository.
func decodeFile(t testing.TB, rel string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(readFile(t, rel), into); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// image is the binary built exactly as the Dockerfile builds it.
var image struct {
	once    sync.Once
	path    string
	version string
	err     error
}

// imageBinary builds (once per test run) the binary the image ships.
func imageBinary(t testing.TB) string {
	t.Helper()
	image.once.Do(func() {
		dir, err := os.MkdirTemp("", "kubestream-image-")
		if err != nil {
			image.err = err
			return
		}
		image.version = "v0.0.0-packaging-test"
		image.path, image.err = buildLikeDockerfile(repoRoot(t), dir, image.version)
	})
	if image.err != nil {
		t.Fatalf("build the binary the way the Dockerfile does: %v", image.err)
	}
	return image.path
}

// runFlags returns the flag names `kubestream run --help` lists.
func runFlags(t testing.TB) map[string]bool {
	t.Helper()
	cmd := exec.Command(imageBinary(t), "run", "--help")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubestream run --help: %v\n%s", err, out.String())
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(out.String(), -1) {
		flags[m[1]] = true
	}
	if !flags["config"] || !flags["sink"] {
		t.Fatalf("could not read flags from kubestream run --help:\n%s", out.String())
	}
	return flags
}

// flagDefault returns the default `kubestream run --help` shows for a flag.
func flagDefault(t testing.TB, name string) string {
	t.Helper()
	out, _ := exec.Command(imageBinary(t), "run", "--help").CombinedOutput()
	m := regexp.MustCompile(`(?m)^\s+--` + regexp.QuoteMeta(name) + `\b.*\(default "?([^")]*)"?\)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no default for --%s in kubestream run --help:\n%s", name, out)
	}
	return string(m[1])
}

// flagNames extracts the --flag names of an argument list.
func flagNames(args []string) []string {
	var names []string
	for _, a := range args {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			names = append(names, name)
		}
	}
	return names
}

// unknownFlags returns the names not in known, sorted.
func unknownFlags(names []string, known map[string]bool) []string {
	var out []string
	for _, n := range names {
		if !known[n] {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// run runs a command and returns its combined output, failing the test on
// error.
func run(t testing.TB, ctx context.Context, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(ctx, env, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runErr(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}
