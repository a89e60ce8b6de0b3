package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kubestream/kubestream/pkg/config"
)

func flags() (*pflag.FlagSet, *string, *[]string, *int) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("config", "", "")
	name := fs.String("cluster-name", "default", "")
	brokers := fs.StringSlice("kafka-brokers", nil, "")
	workers := fs.Int("workers", 4, "")
	return fs, name, brokers, workers
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlagsWinOverEnvironmentOverFile(t *testing.T) {
	file := writeFile(t, "cluster-name: from-file\nkafka-brokers: [a:9092, b:9092]\nworkers: 8\n")
	t.Setenv("KUBESTREAM_CLUSTER_NAME", "from-env")
	fs, name, brokers, workers := flags()
	if err := config.Parse(fs, []string{"--config", file, "--workers", "2"}); err != nil {
		t.Fatal(err)
	}
	if *name != "from-env" {
		t.Errorf("cluster-name = %q, want the environment's value over the file's", *name)
	}
	if *workers != 2 {
		t.Errorf("workers = %d, want the flag's value", *workers)
	}
	if strings.Join(*brokers, ",") != "a:9092,b:9092" {
		t.Errorf("kafka-brokers = %v, want the file's list", *brokers)
	}
}

func TestUnknownFileKeyIsAnError(t *testing.T) {
	file := writeFile(t, "kafka-brokerz: [a:9092]\n")
	fs, _, _, _ := flags()
	err := config.Parse(fs, []string{"--config", file})
	if err == nil || !strings.Contains(err.Error(), `unknown setting "kafka-brokerz"`) {
		t.Fatalf("err = %v, want it to name the unknown key", err)
	}
}

func TestBadValuesNameTheirSource(t *testing.T) {
	t.Setenv("KUBESTREAM_WORKERS", "many")
	fs, _, _, _ := flags()
	err := config.Parse(fs, nil)
	if err == nil || !strings.Contains(err.Error(), "KUBESTREAM_WORKERS") {
		t.Fatalf("err = %v, want it to name the variable", err)
	}
	fs, _, _, _ = flags()
	err = config.Parse(fs, []string{"--config", writeFile(t, "workers: [1, 2\n")})
	if err == nil || !strings.Contains(err.Error(), "not valid YAML") {
		t.Fatalf("err = %v, want a YAML error", err)
	}
}

func TestSecret(t *testing.T) {
	p := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := config.Secret("", p, "SASL password"); err != nil || v != "s3cret" {
		t.Fatalf("from file: %q, %v", v, err)
	}
	if v, err := config.Secret("direct", "", "SASL password"); err != nil || v != "direct" {
		t.Fatalf("direct: %q, %v", v, err)
	}
	if _, err := config.Secret("direct", p, "SASL password"); err == nil {
		t.Fatal("both a value and a file were accepted")
	}
	if _, err := config.Secret("", p+".missing", "SASL password"); err == nil || !strings.Contains(err.Error(), "SASL password") {
		t.Fatalf("missing file: %v", err)
	}
}
