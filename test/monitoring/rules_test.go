package monitoring

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var rf ruleFile
	if err := yaml.UnmarshalStrict([]byte(readFile(t, "deploy/monitoring/alerts.yaml")), &rf); err != nil {
		t.Fatalf("deploy/monitoring/alerts.yaml: %v", err)
	}
	return rf
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install it with 'apt-get install prometheus' (Debian's package ships promtool; .ci/run does this)")
	}
	return p
}

// TestAlertRules runs `promtool check rules` on alerts.yaml and
// `promtool test rules` on alerts_test.yaml. The cases state labels and
// summaries; the description and runbook text is checked here instead (on
// every alert) and left out of the copy promtool evaluates.
func TestAlertRules(t *testing.T) {
	bin := promtool(t)
	root := repoRoot(t)
	if out, err := exec.Command(bin, "check", "rules", filepath.Join(root, "deploy/monitoring/alerts.yaml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	rf := loadRules(t)
	for gi := range rf.Groups {
		for ri := range rf.Groups[gi].Rules {
			r := &rf.Groups[gi].Rules[ri]
			r.Annotations = map[string]string{"summary": r.Annotations["summary"]}
		}
	}
	stripped, err := yaml.Marshal(rf)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alerts.yaml"), stripped, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := readFile(t, "deploy/monitoring/alerts_test.yaml")
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), []byte(cases), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "test", "rules", "alerts_test.yaml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules deploy/monitoring/alerts_test.yaml: %v\n%s", err, out)
	}

	// Every alert has a case that fires it.
	var tests struct {
		Tests []struct {
			InputSeries []struct {
				Series string `json:"series"`
			} `json:"input_series"`
			AlertRuleTest []struct {
				Alertname string            `json:"alertname"`
				ExpAlerts []json.RawMessage `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal([]byte(cases), &tests); err != nil {
		t.Fatal(err)
	}
	fired := map[string]bool{}
	quiet := map[string]bool{}
	docs := metricsTable(t)
	targetLabels := map[string]bool{"job": true, "instance": true, "namespace": true, "pod": true}
	seriesLabels := regexp.MustCompile(`([a-z_]+)="`)
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fired[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
		// The input series are shaped like the real /metrics: documented
		// names, their documented labels, and target labels.
		for _, s := range tc.InputSeries {
			for _, d := range seriesIn(t, "alerts_test.yaml series "+s.Series, s.Series, docs) {
				allowed := map[string]bool{}
				for _, l := range d.labels {
					allowed[l] = true
				}
				for _, m := range seriesLabels.FindAllStringSubmatch(s.Series, -1) {
					if !allowed[m[1]] && !targetLabels[m[1]] {
						t.Errorf("alerts_test.yaml: series %s has label %q, which %s does not have", s.Series, m[1], d.name)
					}
				}
			}
		}
	}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if !fired[r.Alert] {
				t.Errorf("alerts_test.yaml has no case where %s fires", r.Alert)
			}
			if !quiet[r.Alert] {
				t.Errorf("alerts_test.yaml has no case where %s stays quiet", r.Alert)
			}
		}
	}
}

// TestAlertsDocumented: every alert has a severity, a summary, a
// description, runbook text and a runbook_url to its section of
// docs/metrics.md, whose alert table lists exactly these alerts; and its
// expression reads documented metrics only.
func TestAlertsDocumented(t *testing.T) {
	docs := metricsTable(t)
	md := readFile(t, "docs/metrics.md")
	var names []string
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
			switch r.Labels["severity"] {
			case "warning", "critical":
			default:
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description", "runbook", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s has no %s annotation", r.Alert, a)
				}
			}
			anchor := strings.ToLower(r.Alert)
			if !strings.HasSuffix(r.Annotations["runbook_url"], "docs/metrics.md#"+anchor) {
				t.Errorf("%s: runbook_url %q, want it to end with docs/metrics.md#%s", r.Alert, r.Annotations["runbook_url"], anchor)
			}
			if !strings.Contains(md, "\n### "+r.Alert+"\n") {
				t.Errorf("docs/metrics.md has no section \"### %s\" for the runbook_url", r.Alert)
			}
			if !strings.Contains(md, "\n| "+r.Alert+" | "+r.Labels["severity"]+" |") {
				t.Errorf("docs/metrics.md's alert table has no row for %s with severity %s", r.Alert, r.Labels["severity"])
			}
			if len(seriesIn(t, r.Alert, r.Expr, docs)) == 0 {
				t.Errorf("%s reads no kubestream metric: %s", r.Alert, r.Expr)
			}
		}
	}
	var tabled []string
	for _, m := range regexp.MustCompile(`(?m)^\| (Kubestream[A-Za-z]+) \|`).FindAllStringSubmatch(md, -1) {
		tabled = append(tabled, m[1])
	}
	sort.Strings(names)
	sort.Strings(tabled)
	if strings.Join(names, ",") != strings.Join(tabled, ",") {
		t.Errorf("docs/metrics.md's alert table lists %v, alerts.yaml has %v", tabled, names)
	}
}

// TestDashboard: the dashboard is valid JSON with the panels the
// documentation promises, and every query reads documented metrics with
// their documented labels.
func TestDashboard(t *testing.T) {
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	// Grafana's model has many more fields: decode only what is checked.
	if err := json.Unmarshal([]byte(readFile(t, "deploy/monitoring/dashboard.json")), &dash); err != nil {
		t.Fatalf("deploy/monitoring/dashboard.json: %v", err)
	}
	if dash.UID == "" {
		t.Error("dashboard has no uid: re-imports would duplicate it")
	}
	docs := metricsTable(t)
	titles := map[string]bool{}
	grouped := regexp.MustCompile(`by \(([a-z_, ]+)\)`)
	for _, p := range dash.Panels {
		titles[p.Title] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			used := seriesIn(t, "panel "+p.Title, q.Expr, docs)
			// Grouping labels exist on the series grouped.
			for _, m := range grouped.FindAllStringSubmatch(q.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					l = strings.TrimSpace(l)
					if l == "pod" || l == "le" {
						continue
					}
					for _, d := range used {
						if !contains(d.labels, l) {
							t.Errorf("panel %q groups %s by %q, which it does not have", p.Title, d.name, l)
						}
					}
				}
			}
		}
	}
	for _, want := range []string{"Events by kind and operation", "Publish latency", "Queue depth and keys pending", "Retries and failing changes",
		"Failures", "Replay rounds", "Resume difference (first round)", "Leader", "Leader over time", "Initial round delivered"} {
		if !titles[want] {
			t.Errorf("dashboard has no panel %q", want)
		}
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
