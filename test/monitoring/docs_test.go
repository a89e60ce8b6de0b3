// Package monitoring holds kubestream's metrics to their documentation and
// its alerts to their tests: docs/metrics.md against the /metrics of the
// running binaries, deploy/monitoring/alerts.yaml under promtool, and the
// dashboard's queries against the documented series.
package monitoring

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
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

func readFile(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// documented is one row of the table in docs/metrics.md.
type documented struct {
	name, typ string
	labels    []string // sorted
	exposed   string
}

var backticked = regexp.MustCompile("`([^`]+)`")

// metricsTable reads the metric table of docs/metrics.md.
func metricsTable(t testing.TB) map[string]documented {
	t.Helper()
	rows := map[string]documented{}
	for _, line := range strings.Split(readFile(t, "docs/metrics.md"), "\n") {
		if !strings.HasPrefix(line, "| `kubestream_") {
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 5 {
			t.Fatalf("docs/metrics.md: row %q has %d cells, want metric | type | labels | exposed | meaning", line, len(cells))
		}
		d := documented{name: strings.Trim(strings.TrimSpace(cells[0]), "`"), typ: strings.TrimSpace(cells[1]), exposed: strings.TrimSpace(cells[3])}
		for _, m := range backticked.FindAllStringSubmatch(cells[2], -1) {
			d.labels = append(d.labels, m[1])
		}
		sort.Strings(d.labels)
		if _, dup := rows[d.name]; dup {
			t.Errorf("docs/metrics.md lists %s twice", d.name)
		}
		switch d.typ {
		case "counter", "gauge", "histogram":
		default:
			t.Errorf("docs/metrics.md: %s has type %q, want counter, gauge or histogram", d.name, d.typ)
		}
		switch d.exposed {
		case "always", "resume", "kafka", "nats", "alert-bridge", "patterns":
		default:
			t.Errorf("docs/metrics.md: %s is exposed %q, want always, resume, kafka, nats, patterns or alert-bridge", d.name, d.exposed)
		}
		rows[d.name] = d
	}
	if len(rows) < 10 {
		t.Fatalf("docs/metrics.md: only %d metric rows found", len(rows))
	}
	return rows
}

var metricName = regexp.MustCompile(`\bkubestream_[a-z0-9_]+`)

// seriesIn returns the documented metric each kubestream_* name in a query
// refers to, histogram suffixes removed; unknown names are reported.
func seriesIn(t *testing.T, where, query string, docs map[string]documented) []documented {
	t.Helper()
	var out []documented
	for _, name := range metricName.FindAllString(query, -1) {
		d, ok := docs[name]
		if !ok {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if h, found := docs[strings.TrimSuffix(name, suffix)]; found && h.typ == "histogram" && strings.HasSuffix(name, suffix) {
					d, ok = h, true
				}
			}
		}
		if !ok {
			t.Errorf("%s uses %s, which docs/metrics.md does not list", where, name)
			continue
		}
		out = append(out, d)
	}
	return out
}
