package helm

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/kubestream/kubestream/internal/testbin"
)

// TestLint runs helm lint --strict (warnings fail) with every value set.
func TestLint(t *testing.T) {
	for _, v := range valueSets {
		t.Run(v.name, func(t *testing.T) {
			args := append([]string{"lint", "--strict"}, v.args(t)[1:]...)
			if out, err := helm(t, args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

func deploymentOf(t *testing.T, objs []*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	u := find(t, objs, "Deployment")
	if u == nil {
		t.Fatal("no Deployment rendered")
	}
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &d, true); err != nil {
		t.Fatalf("Deployment: %v", err)
	}
	return &d
}

func clusterRoleOf(t *testing.T, objs []*unstructured.Unstructured) *rbacv1.ClusterRole {
	t.Helper()
	u := find(t, objs, "ClusterRole")
	if u == nil {
		t.Fatal("no ClusterRole rendered")
	}
	var r rbacv1.ClusterRole
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &r, true); err != nil {
		t.Fatalf("ClusterRole: %v", err)
	}
	return &r
}

func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// TestRender checks what each value set renders: the arguments, the
// mounted secrets, GOMEMLIMIT, and which optional objects exist.
func TestRender(t *testing.T) {
	type want struct {
		args       []string // present, in this order relative to each other
		noArgs     []string // flag prefixes that must be absent
		goMemLimit string   // "" means unset
		replicas   int32
		mounts     map[string]string // volume name -> secret name
		kinds      []string          // rendered objects that must exist
		noKinds    []string          // and must not
	}
	cases := map[string]want{
		"defaults": {
			args: []string{"run", "--cluster-name=default", "--kinds=nodes,pods,deployments.apps,configmaps", "--resume=true",
				"--leader-elect", "--leader-elect-resource-name=kubestream", "--sink=kafka", "--kafka-brokers=kafka:9092"},
			noArgs: []string{"--kafka-tls", "--kafka-sasl", "--namespace=", "--selector="},
			// 0.9 of 512Mi.
			goMemLimit: "460MiB", replicas: 2, mounts: map[string]string{},
			kinds:   []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "PodDisruptionBudget"},
			noKinds: []string{"ServiceMonitor", "PrometheusRule", "ConfigMap"},
		},
		"kafka": {
			args: []string{"--cluster-name=prod-eu-1", "--sink=kafka", "--kafka-brokers=kafka-0.kafka:9093,kafka-1.kafka:9093", "--kafka-create-topics",
				"--kafka-tls", "--kafka-tls-ca-file=/var/run/secrets/kubestream/kafka-tls/ca.crt",
				"--kafka-tls-cert-file=/var/run/secrets/kubestream/kafka-tls/tls.crt", "--kafka-tls-key-file=/var/run/secrets/kubestream/kafka-tls/tls.key",
				"--kafka-sasl-mechanism=scram-sha-512", "--kafka-sasl-username=kubestream",
				"--kafka-sasl-password-file=/var/run/secrets/kubestream/kafka-sasl/password"},
			noArgs:     []string{"--nats-"},
			goMemLimit: "460MiB", replicas: 2,
			mounts: map[string]string{"kafka-tls": "kafka-client-tls", "kafka-sasl": "kafka-credentials"},
			kinds:  []string{"ServiceMonitor", "PrometheusRule", "ConfigMap", "Role"},
		},
		"nats": {
			args: []string{"--kinds=pods,deployments.apps", "--sink=nats",
				"--nats-url=tls://nats-0.nats:4222,tls://nats-1.nats:4222", "--nats-stream=CLUSTER_EVENTS", "--nats-stream-create",
				"--nats-tls-ca-file=/var/run/secrets/kubestream/nats-tls/ca.crt",
				"--nats-creds-file=/var/run/secrets/kubestream/nats-auth/kubestream.creds", "--workers=8", "--unready-after=2m"},
			noArgs: []string{"--kafka-", "--nats-tls-cert-file", "--nats-token-file", "--nats-user"},
			// 0.8 of 1Gi.
			goMemLimit: "819MiB", replicas: 2,
			mounts:  map[string]string{"nats-tls": "nats-ca", "nats-auth": "nats-kubestream-user"},
			noKinds: []string{"ServiceMonitor", "PrometheusRule"},
		},
		"crd-kinds": {
			args:       []string{"--kinds=configmaps,pods,statefulsets.apps,deployments.apps,cronjobs.batch,certificates.cert-manager.io", "--sink=stdout"},
			noArgs:     []string{"--leader-elect"},
			goMemLimit: "460MiB", replicas: 1, mounts: map[string]string{},
			noKinds: []string{"Role", "PodDisruptionBudget"},
		},
		"single": {
			args:     []string{"--kinds=configmaps", "--namespace=team-a", "--selector=app in (web, api),tier!=test", "--sink=stdout"},
			noArgs:   []string{"--leader-elect", "--kafka-", "--nats-"},
			replicas: 1, mounts: map[string]string{},
			noKinds: []string{"Role", "RoleBinding", "PodDisruptionBudget"},
		},
	}
	for _, v := range valueSets {
		t.Run(v.name, func(t *testing.T) {
			w, ok := cases[v.name]
			if !ok {
				t.Fatalf("no expectations for value set %s", v.name)
			}
			objs := objects(t, render(t, v))
			d := deploymentOf(t, objs)
			c := d.Spec.Template.Spec.Containers[0]
			last := -1
			for _, a := range w.args {
				i := slices.Index(c.Args, a)
				if i < 0 {
					t.Errorf("argument %q missing from %q", a, c.Args)
				} else if i < last {
					t.Errorf("argument %q out of order in %q", a, c.Args)
				} else {
					last = i
				}
			}
			for _, p := range w.noArgs {
				for _, a := range c.Args {
					if strings.HasPrefix(a, p) {
						t.Errorf("argument %q rendered, want none starting %q", a, p)
					}
				}
			}
			got, set := envValue(c, "GOMEMLIMIT")
			if w.goMemLimit == "" && set {
				t.Errorf("GOMEMLIMIT=%s without a memory limit", got)
			}
			if w.goMemLimit != "" && got != w.goMemLimit {
				t.Errorf("GOMEMLIMIT=%q, want %q", got, w.goMemLimit)
			}
			if d.Spec.Replicas == nil || *d.Spec.Replicas != w.replicas {
				t.Errorf("replicas %v, want %d", d.Spec.Replicas, w.replicas)
			}
			mounted := map[string]string{}
			for _, vol := range d.Spec.Template.Spec.Volumes {
				if vol.Secret != nil {
					mounted[vol.Name] = vol.Secret.SecretName
				}
			}
			if !mapsEqual(mounted, w.mounts) {
				t.Errorf("secret volumes %v, want %v", mounted, w.mounts)
			}
			// Every file argument points into a mounted volume.
			for _, a := range c.Args {
				if _, path, ok := strings.Cut(a, "-file="); ok && !underMount(c, path) {
					t.Errorf("%s is not under a volume mount of the container", a)
				}
			}
			for _, k := range w.kinds {
				if find(t, objs, k) == nil {
					t.Errorf("no %s rendered", k)
				}
			}
			for _, k := range w.noKinds {
				if find(t, objs, k) != nil {
					t.Errorf("%s rendered, want none", k)
				}
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
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

func underMount(c corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}

// TestClusterRoleFromKinds checks the resource.group split: one rule per
// group with exactly the listed resources, then rbac.extraRules.
func TestClusterRoleFromKinds(t *testing.T) {
	read := []string{"get", "list", "watch"}
	for _, c := range []struct {
		set  valueSet
		want []rbacv1.PolicyRule
	}{
		{valueSetNamed(t, "crd-kinds"), []rbacv1.PolicyRule{ // groups sorted, resources sorted within
			{APIGroups: []string{""}, Resources: []string{"configmaps", "pods"}, Verbs: read},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets"}, Verbs: read},
			{APIGroups: []string{"batch"}, Resources: []string{"cronjobs"}, Verbs: read},
			{APIGroups: []string{"cert-manager.io"}, Resources: []string{"certificates"}, Verbs: read},
		}},
		{valueSetNamed(t, "nats"), []rbacv1.PolicyRule{ // rbac.extraRules last
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: read},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: read},
			{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: read},
		}},
	} {
		t.Run(c.set.name, func(t *testing.T) { checkRules(t, clusterRoleOf(t, objects(t, render(t, c.set))).Rules, c.want) })
	}
}

func valueSetNamed(t *testing.T, name string) valueSet {
	for _, v := range valueSets {
		if v.name == name {
			return v
		}
	}
	t.Fatalf("no value set %s", name)
	return valueSet{}
}

func checkRules(t *testing.T, got, want []rbacv1.PolicyRule) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("rules %+v, want %+v", got, want)
	}
	for i := range want {
		if !slices.Equal(got[i].APIGroups, want[i].APIGroups) || !slices.Equal(got[i].Resources, want[i].Resources) ||
			!slices.Equal(got[i].Verbs, want[i].Verbs) || len(got[i].ResourceNames) > 0 || len(got[i].NonResourceURLs) > 0 {
			t.Errorf("rule %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestRefusesBadValues: values that would make a broken or unsafe release
// fail to render with one line that says what to change.
func TestRefusesBadValues(t *testing.T) {
	cases := []struct {
		name string
		set  []string
		want string
	}{
		{"kafka without brokers", nil, "sink.type kafka needs sink.kafka.brokers"},
		{"nats without urls", []string{"sink.type=nats"}, "sink.type nats needs sink.nats.urls"},
		{"unknown sink", []string{"sink.type=redis"}, `sink.type "redis" is unknown: use kafka, nats or stdout`},
		{"replicas without election", []string{"sink.type=stdout", "leaderElection.enabled=false"}, "replicas 2 without leaderElection.enabled would publish every event 2 times"},
		{"kind without group", []string{"sink.type=stdout", "kinds={pods,deployments}"}, `kinds: "deployments" has no API group and is not a core resource: write it as resource.group, e.g. deployments.apps`},
		{"kind not a name", []string{"sink.type=stdout", "kinds={Pods}"}, `kinds: "Pods" is not a kubectl resource name`},
		{"no kinds", []string{"sink.type=stdout", "kinds=null"}, "kinds is empty"},
		{"memory limit unit", []string{"sink.type=stdout", "resources.limits.memory=512MB"}, `resources.limits.memory "512MB": unit "MB" is not one of`},
		{"mtls half", []string{"sink.kafka.brokers={k:9092}", "sink.kafka.tls.enabled=true", "sink.kafka.tls.secretName=s", "sink.kafka.tls.certKey=tls.crt"}, "sink.kafka.tls.certKey and keyKey go together"},
		{"sasl without secret", []string{"sink.kafka.brokers={k:9092}", "sink.kafka.sasl.mechanism=plain"}, "sink.kafka.sasl.mechanism needs sink.kafka.sasl.passwordSecret.name"},
		{"two nats auths", []string{"sink.type=nats", "sink.nats.urls={nats://n:4222}", "sink.nats.auth.credsSecret.name=a", "sink.nats.auth.tokenSecret.name=b"}, "sink.nats.auth: give one of"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := valueSet{name: "bad", namespace: "bad", set: c.set}
			out, err := helm(t, append([]string{"template"}, v.args(t)...)...)
			if err == nil {
				t.Fatalf("rendered, want an error containing %q:\n%s", c.want, out)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v\nwant it to contain %q", err, c.want)
			}
		})
	}
}

// TestRenderedArgsAreRunFlags: every flag the chart renders, in every value
// set, is a flag of the binary's `kubestream run`, and the binary accepts
// the rendered arguments: run with them and a kubeconfig that does not
// exist, it passes flag validation and stops at the kubeconfig, or only
// misses the secret files the pod would have mounted.
func TestRenderedArgsAreRunFlags(t *testing.T) {
	bin := testbin.BuildForTest(t)
	var help bytes.Buffer
	cmd := exec.Command(bin, "run", "--help")
	cmd.Stdout, cmd.Stderr = &help, &help
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubestream run --help: %v\n%s", err, help.String())
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(help.String(), -1) {
		known[m[1]] = true
	}
	if !known["sink"] {
		t.Fatalf("no flags read from kubestream run --help:\n%s", help.String())
	}
	for _, v := range valueSets {
		args := deploymentOf(t, objects(t, render(t, v))).Spec.Template.Spec.Containers[0].Args
		if args[0] != "run" {
			t.Errorf("%s: first argument %q, want run", v.name, args[0])
		}
		for _, a := range args[1:] {
			name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if !strings.HasPrefix(a, "--") || !known[name] {
				t.Errorf("%s: %q is not a flag of kubestream run", v.name, a)
			}
		}
		missing := filepath.Join(t.TempDir(), "no-kubeconfig")
		var out bytes.Buffer
		cmd := exec.Command(bin, append(args, "--kubeconfig", missing)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 2 {
			t.Errorf("%s: kubestream %s exited %d (%v), want 2 at the missing kubeconfig:\n%s", v.name, strings.Join(args, " "), code, err, out.String())
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if !strings.Contains(line, missing) && !strings.Contains(line, "/var/run/secrets/kubestream/") {
				t.Errorf("%s: the binary refuses the rendered arguments: %s", v.name, line)
			}
		}
	}
}

// TestPrometheusRuleIsTheAlertsFile: the rendered PrometheusRule holds the
// rules of deploy/monitoring/alerts.yaml (the promtool-tested file)
// unchanged but for prometheusRule.alertLabels, which never override a
// rule's own labels.
func TestPrometheusRuleIsTheAlertsFile(t *testing.T) {
	v := valueSetNamed(t, "kafka")
	v.set = append(v.set, "prometheusRule.alertLabels.severity=page")
	pr := find(t, objects(t, render(t, v)), "PrometheusRule")
	if pr == nil {
		t.Fatal("no PrometheusRule rendered")
	}
	type ruleFile struct {
		Groups []struct {
			Name  string           `json:"name"`
			Rules []map[string]any `json:"rules"`
		} `json:"groups"`
	}
	var want ruleFile
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "monitoring", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	specJSON, err := json.Marshal(pr.Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	var got ruleFile
	if err := json.Unmarshal(specJSON, &got); err != nil {
		t.Fatal(err)
	}
	for gi, g := range want.Groups {
		for ri, r := range g.Rules {
			labels := r["labels"].(map[string]any)
			labels["team"] = "platform" // from the value set; severity stays the rule's
			r["labels"] = labels
			if gi >= len(got.Groups) || ri >= len(got.Groups[gi].Rules) {
				t.Fatalf("rule %s missing from the PrometheusRule", r["alert"])
			}
			if !reflect.DeepEqual(got.Groups[gi].Rules[ri], r) {
				t.Errorf("rule %s rendered as\n%v\nwant\n%v", r["alert"], got.Groups[gi].Rules[ri], r)
			}
		}
	}
}
