package noise_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kubestream/kubestream/pkg/config"
	"github.com/kubestream/kubestream/pkg/noise"
)

// The rules come from the --config file as a YAML list, the way every
// setting does; the file's list replaces the defaults.
func TestPathsFromConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "kubestream.yaml")
	yaml := "ignore-paths:\n  - 'pods:metadata.annotations[\"a,b\"]'\n  - nodes:status.conditions[*].lastHeartbeatTime\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.String("config", "", "")
	p := noise.NewPaths(noise.Defaults)
	fs.Var(p, "ignore-paths", "")
	if err := config.Parse(fs, []string{"--config", file}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Rules(), " "); got != `pods:metadata.annotations["a,b"] nodes:status.conditions[*].lastHeartbeatTime` || !p.Given() {
		t.Fatalf("rules %s (given %v)", got, p.Given())
	}
	if _, err := noise.New(p.Rules()); err != nil {
		t.Fatal(err)
	}
}
