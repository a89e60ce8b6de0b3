package deploy

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/kubestream/kubestream/internal/controlplane"
	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// manifests are the objects of deploy/, decoded strictly.
type manifests struct {
	Namespace   corev1.Namespace
	Account     corev1.ServiceAccount
	Role        rbacv1.ClusterRole
	Binding     rbacv1.ClusterRoleBinding
	Config      corev1.ConfigMap
	Service     corev1.Service
	Deployment  appsv1.Deployment
	SASLPatch   appsv1.Deployment
	SASLExample corev1.Secret
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	var m manifests
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	decodeFile(t, "deploy/base/kustomization.yaml", &k)
	want := []string{"namespace.yaml", "serviceaccount.yaml", "clusterrole.yaml", "clusterrolebinding.yaml", "configmap.yaml", "service.yaml", "deployment.yaml"}
	if got := slices.Sorted(slices.Values(k.Resources)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("deploy/base/kustomization.yaml resources %v, want %v", k.Resources, want)
	}
	decodeFile(t, "deploy/base/namespace.yaml", &m.Namespace)
	decodeFile(t, "deploy/base/serviceaccount.yaml", &m.Account)
	decodeFile(t, "deploy/base/clusterrole.yaml", &m.Role)
	decodeFile(t, "deploy/base/clusterrolebinding.yaml", &m.Binding)
	decodeFile(t, "deploy/base/configmap.yaml", &m.Config)
	decodeFile(t, "deploy/base/service.yaml", &m.Service)
	decodeFile(t, "deploy/base/deployment.yaml", &m.Deployment)
	decodeFile(t, "deploy/examples/kafka-sasl/deployment-patch.yaml", &m.SASLPatch)
	decodeFile(t, "deploy/examples/kafka-sasl/secret.example.yaml", &m.SASLExample)
	return m
}

// serviceAccountUser is the user name the apiserver gives the account.
func (m manifests) serviceAccountUser() (string, []string) {
	ns := m.Account.Namespace
	return "system:serviceaccount:" + ns + ":" + m.Account.Name,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
}

// TestClusterRoleIsTheWatchedKinds holds the ClusterRole to exactly get, list
// and watch on the kinds of pkg/kinds: adding a kind without its rule, or a
// rule without a kind, fails here.
func TestClusterRoleIsTheWatchedKinds(t *testing.T) {
	m := loadManifests(t)
	got := sets.New[string]()
	for _, r := range m.Role.Rules {
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			t.Errorf("rule %+v: resourceNames and nonResourceURLs are not needed", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					got.Insert(g + "/" + res + ":" + v)
				}
			}
		}
	}
	want := sets.New[string]()
	for _, k := range kinds.All() {
		for _, v := range []string{"get", "list", "watch"} {
			want.Insert(k.GVK.Group + "/" + k.Resource + ":" + v)
		}
	}
	if extra := got.Difference(want); extra.Len() > 0 {
		t.Errorf("ClusterRole grants more than the watched kinds need: %v", sets.List(extra))
	}
	if missing := want.Difference(got); missing.Len() > 0 {
		t.Errorf("ClusterRole lacks: %v", sets.List(missing))
	}
	b := m.Binding
	if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != m.Role.Name || len(b.Subjects) != 1 ||
		b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != m.Account.Name || b.Subjects[0].Namespace != m.Account.Namespace {
		t.Errorf("ClusterRoleBinding %+v does not bind ClusterRole %s to ServiceAccount %s/%s only", b, m.Role.Name, m.Account.Namespace, m.Account.Name)
	}
}

// TestDeploymentShape checks the promises the Deployment makes that the
// apiserver cannot judge: one publisher at a time, probes on the endpoints
// kubestream serves, and settings kubestream knows.
func TestDeploymentShape(t *testing.T) {
	m := loadManifests(t)
	d := m.Deployment
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("replicas %v, want 1: two instances publish every change twice", d.Spec.Replicas)
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy %q, want Recreate: a rolling update runs two instances at once", d.Spec.Strategy.Type)
	}
	ps := d.Spec.Template.Spec
	if ps.ServiceAccountName != m.Account.Name {
		t.Errorf("serviceAccountName %q, want %q", ps.ServiceAccountName, m.Account.Name)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(ps.Containers))
	}
	c := ps.Containers[0]
	_, port, _ := strings.Cut(flagDefault(t, "listen-address"), ":")
	if len(c.Ports) != 1 || fmt.Sprint(c.Ports[0].ContainerPort) != port {
		t.Errorf("container ports %+v, want one on %s (default --listen-address)", c.Ports, port)
	}
	for probe, want := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != c.Ports[0].Name {
			t.Errorf("want an HTTP probe of %s on port %s, got %+v", want, c.Ports[0].Name, probe)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	sc := c.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container securityContext %+v: want runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, drop ALL, seccomp RuntimeDefault", sc)
	}
	if ps.TerminationGracePeriodSeconds == nil || time.Duration(*ps.TerminationGracePeriodSeconds)*time.Second <= mustDuration(t, flagDefault(t, "shutdown-timeout")) {
		t.Errorf("terminationGracePeriodSeconds %v must exceed --shutdown-timeout %s, or the kubelet kills kubestream while it drains", ps.TerminationGracePeriodSeconds, flagDefault(t, "shutdown-timeout"))
	}

	// Settings: the flags in args, the KUBESTREAM_ variables and the keys of
	// the config file are all flags of kubestream run.
	flags := runFlags(t)
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Errorf("args %v do not start with run", c.Args)
	}
	if bad := unknownFlags(flagNames(c.Args), flags); len(bad) > 0 {
		t.Errorf("args use flags kubestream run does not have: %v", bad)
	}
	for _, e := range append(slices.Clone(c.Env), m.SASLPatch.Spec.Template.Spec.Containers[0].Env...) {
		if f, ok := strings.CutPrefix(e.Name, "KUBESTREAM_"); ok && !flags[strings.ToLower(strings.ReplaceAll(f, "_", "-"))] {
			t.Errorf("environment %s matches no flag of kubestream run", e.Name)
		}
	}
	configPath, ok := argValue(c.Args, "config")
	if !ok {
		t.Fatal("args do not pass --config")
	}
	mount, ok := mountOf(c, configPath)
	if !ok {
		t.Fatalf("--config %s is on no volume mount", configPath)
	}
	vol := volumeNamed(ps, mount.Name)
	if vol == nil || vol.ConfigMap == nil || vol.ConfigMap.Name != m.Config.Name {
		t.Fatalf("--config %s: volume %s is not the ConfigMap %s", configPath, mount.Name, m.Config.Name)
	}
	rel, _ := filepath.Rel(mount.MountPath, configPath)
	data, ok := m.Config.Data[rel]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s for --config %s", m.Config.Name, rel, configPath)
	}
	var settings map[string]any
	if err := yaml.Unmarshal([]byte(data), &settings); err != nil {
		t.Fatalf("ConfigMap %s/%s is not YAML: %v", m.Config.Name, rel, err)
	}
	if bad := unknownFlags(slices.Collect(mapKeys(settings)), flags); len(bad) > 0 {
		t.Errorf("ConfigMap %s/%s has keys that are no flags of kubestream run: %v", m.Config.Name, rel, bad)
	}

	// The SASL example reads every credential file from the mounted Secret.
	patch := m.SASLPatch.Spec.Template.Spec
	for _, e := range patch.Containers[0].Env {
		if !strings.HasSuffix(e.Name, "_FILE") {
			if strings.Contains(strings.ToLower(e.Name), "password") {
				t.Errorf("%s: a password must come from a file", e.Name)
			}
			continue
		}
		mount, ok := mountOf(patch.Containers[0], e.Value)
		if !ok {
			t.Errorf("%s=%s is on no volume mount", e.Name, e.Value)
			continue
		}
		v := volumeNamed(patch, mount.Name)
		key := path.Base(e.Value)
		if v == nil || v.Secret == nil || v.Secret.SecretName != m.SASLExample.Name {
			t.Errorf("%s=%s: volume %s is not the Secret %s", e.Name, e.Value, mount.Name, m.SASLExample.Name)
		} else if _, ok := m.SASLExample.StringData[key]; !ok {
			t.Errorf("%s=%s: secret.example.yaml has no key %s", e.Name, e.Value, key)
		}
	}
}

func mustDuration(t *testing.T, s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// mountOf finds the volume mount a file path lies in.
func mountOf(c corev1.Container, file string) (corev1.VolumeMount, bool) {
	for _, vm := range c.VolumeMounts {
		if strings.HasPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			return vm, true
		}
	}
	return corev1.VolumeMount{}, false
}

func volumeNamed(ps corev1.PodSpec, name string) *corev1.Volume {
	for i := range ps.Volumes {
		if ps.Volumes[i].Name == name {
			return &ps.Volumes[i]
		}
	}
	return nil
}

// cluster is the control plane shared by the apiserver tests.
var cluster struct {
	once    sync.Once
	cp      *controlplane.ControlPlane
	kubectl string
	err     error
}

func startCluster(t *testing.T) (*controlplane.ControlPlane, string) {
	t.Helper()
	cluster.once.Do(func() {
		bin, err := controlplane.FindBinDir()
		if err != nil {
			cluster.err = err
			return
		}
		cluster.kubectl = filepath.Join(bin, "kubectl")
		cluster.cp, cluster.err = controlplane.Start(context.Background(), controlplane.Options{BinDir: bin})
	})
	if cluster.err != nil {
		t.Fatalf("start control plane: %v", cluster.err)
	}
	return cluster.cp, cluster.kubectl
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster.cp != nil {
		cluster.cp.Stop()
	}
	if image.path != "" {
		os.RemoveAll(filepath.Dir(image.path))
	}
	os.Exit(code)
}

// kubectl runs the control plane's kubectl and returns stdout and stderr.
func kubectl(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	cp, bin := startCluster(t)
	cmd := exec.Command(bin, append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...)
	cmd.Dir = repoRoot(t)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String(), e.String()
}

// TestManifestsOnAPIServer applies deploy/ to a real apiserver: first as a
// server-side dry run with strict field validation (typos and unknown
// fields fail, Pod Security warnings fail), then for real, and then checks
// the service account's effective permissions and runs the binary the image
// ships with the Deployment's arguments, environment and ConfigMap, under
// the service account's own token.
func TestManifestsOnAPIServer(t *testing.T) {
	m := loadManifests(t)
	cp, _ := startCluster(t)
	ctx := context.Background()
	admin := kubernetes.NewForConfigOrDie(cp.RestConfig())

	// Namespaced objects need their namespace to exist even in a dry run.
	kubectl(t, "apply", "--validate=strict", "-f", "deploy/base/namespace.yaml")

	t.Run("dry run", func(t *testing.T) {
		out, warnings := kubectl(t, "apply", "--dry-run=server", "--validate=strict", "-k", "deploy")
		if warnings != "" {
			t.Errorf("the apiserver warned:\n%s", warnings)
		}
		if n := strings.Count(out, "(server dry run)"); n != 7 {
			t.Errorf("dry run applied %d objects, want 7:\n%s", n, out)
		}
		// The example's Secret and overlay, the Secret created the way
		// its comment says.
		out, warnings = kubectl(t, "apply", "--dry-run=server", "--validate=strict", "-f", "deploy/examples/kafka-sasl/secret.example.yaml")
		if warnings != "" || !strings.Contains(out, "(server dry run)") {
			t.Errorf("secret.example.yaml: %s%s", out, warnings)
		}
		out, warnings = kubectl(t, "apply", "--dry-run=server", "--validate=strict", "-k", "deploy/examples/kafka-sasl")
		if warnings != "" || strings.Count(out, "(server dry run)") != 7 {
			t.Errorf("examples/kafka-sasl: %s%s", out, warnings)
		}
	})

	// For real: the checks below need the objects.
	kubectl(t, "apply", "--validate=strict", "-k", "deploy")

	// The namespace enforces the restricted Pod Security Standard: a pod
	// made from the Deployment's template must pass it.
	t.Run("pod security", func(t *testing.T) {
		var warnings []string
		cfg := cp.RestConfig()
		cfg.WarningHandler = warningFunc(func(msg string) { warnings = append(warnings, msg) })
		client := kubernetes.NewForConfigOrDie(cfg)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "pod-security-check", Namespace: m.Namespace.Name, Labels: m.Deployment.Spec.Template.Labels},
			Spec:       m.Deployment.Spec.Template.Spec,
		}
		if _, err := client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Fatalf("the Deployment's pod is rejected in namespace %s: %v", pod.Namespace, err)
		}
		if len(warnings) > 0 {
			t.Errorf("warnings: %v", warnings)
		}
		// The check has teeth: a root container is refused.
		pod.Spec.SecurityContext = nil
		pod.Spec.Containers[0].SecurityContext = nil
		if _, err := client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil {
			t.Fatal("a pod without securityContext was admitted: the namespace does not enforce Pod Security")
		}
	})

	t.Run("least privilege", func(t *testing.T) {
		user, groups := m.serviceAccountUser()
		// Everything the account may do beyond what every authenticated
		// account may do (discovery, self reviews) is exactly get, list and
		// watch on the watched kinds.
		granted := rulesOf(t, cp, user, groups).Difference(rulesOf(t, cp, "system:serviceaccount:"+m.Namespace.Name+":nobody", groups))
		want := sets.New[string]()
		for _, k := range kinds.All() {
			for _, v := range []string{"get", "list", "watch"} {
				want.Insert(k.GVK.Group + "/" + k.Resource + ":" + v)
			}
		}
		if !granted.Equal(want) {
			t.Errorf("service account %s may, beyond every account:\n  %v\nwant exactly:\n  %v", user, sets.List(granted), sets.List(want))
		}

		type check struct {
			verb, group, resource, sub, namespace string
			allowed                               bool
		}
		var checks []check
		for _, k := range kinds.All() {
			for _, v := range []string{"get", "list", "watch"} {
				checks = append(checks, check{v, k.GVK.Group, k.Resource, "", "", true})
				if k.Namespaced {
					checks = append(checks, check{v, k.GVK.Group, k.Resource, "", "default", true})
				}
			}
		}
		checks = append(checks,
			check{"get", "", "secrets", "", "", false},
			check{"list", "", "secrets", "", "", false},
			check{"watch", "", "secrets", "", m.Namespace.Name, false},
			check{"create", "", "pods", "", "default", false},
			check{"delete", "", "pods", "", "default", false},
			check{"update", "", "pods", "", "default", false},
			check{"patch", "", "pods", "", "default", false},
			check{"create", "", "pods", "exec", "default", false},
			check{"get", "", "pods", "log", "default", false},
			check{"update", "", "pods", "status", "default", false},
			check{"patch", "", "nodes", "", "", false},
			check{"get", "", "nodes", "proxy", "", false},
			check{"update", "", "configmaps", "", "default", false},
			check{"create", "", "configmaps", "", m.Namespace.Name, false},
			check{"update", "apps", "deployments", "", "default", false},
			check{"update", "apps", "deployments", "scale", "default", false},
			check{"list", "apps", "replicasets", "", "", false},
			check{"create", "", "serviceaccounts", "token", m.Namespace.Name, false},
			check{"list", "", "events", "", "", false},
			check{"escalate", "rbac.authorization.k8s.io", "clusterroles", "", "", false},
			check{"impersonate", "", "users", "", "", false},
		)
		for _, c := range checks {
			sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
				User: user, Groups: groups,
				ResourceAttributes: &authzv1.ResourceAttributes{Verb: c.verb, Group: c.group, Resource: c.resource, Subresource: c.sub, Namespace: c.namespace},
			}}
			res, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status.Allowed != c.allowed {
				t.Errorf("%s %s/%s/%s in %q: allowed=%v, want %v", c.verb, c.group, c.resource, c.sub, c.namespace, res.Status.Allowed, c.allowed)
			}
		}
	})

	t.Run("binary as the service account", func(t *testing.T) { runAsDeployment(t, m, cp, admin) })
}

type warningFunc func(string)

func (f warningFunc) HandleWarningHeader(_ int, _ string, msg string) { f(msg) }

// rulesOf returns what a user may do on resources, as group/resource:verb
// (resourceName appended when the rule names objects), from a
// SelfSubjectRulesReview made while impersonating the user.
func rulesOf(t *testing.T, cp *controlplane.ControlPlane, user string, groups []string) sets.Set[string] {
	t.Helper()
	cfg := cp.RestConfig()
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	client := kubernetes.NewForConfigOrDie(cfg)
	rev, err := client.AuthorizationV1().SelfSubjectRulesReviews().Create(context.Background(),
		&authzv1.SelfSubjectRulesReview{Spec: authzv1.SelfSubjectRulesReviewSpec{Namespace: "default"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("rules of %s: %v", user, err)
	}
	out := sets.New[string]()
	for _, r := range rev.Status.ResourceRules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					key := g + "/" + res + ":" + v
					if len(r.ResourceNames) > 0 {
						key += "[" + strings.Join(r.ResourceNames, ",") + "]"
					}
					out.Insert(key)
				}
			}
		}
	}
	for _, r := range rev.Status.NonResourceRules {
		for _, u := range r.NonResourceURLs {
			for _, v := range r.Verbs {
				out.Insert(u + ":" + v)
			}
		}
	}
	return out
}

// runAsDeployment runs the binary the image ships the way the Deployment
// would: its args, its environment (downward API values filled in), the
// ConfigMap as the config file, and a token of the ServiceAccount. Only the
// sink is switched to stdout (no broker here) and the listen address to a
// free loopback port. kubestream must become ready, stream a change made
// afterwards (so watch is allowed too), stamp it with the Deployment's
// cluster name and pod name, and exit 0 on SIGTERM.
func runAsDeployment(t *testing.T, m manifests, cp *controlplane.ControlPlane, admin kubernetes.Interface) {
	ctx := context.Background()
	dir := t.TempDir()
	c := m.Deployment.Spec.Template.Spec.Containers[0]

	tok, err := admin.CoreV1().ServiceAccounts(m.Account.Namespace).CreateToken(ctx, m.Account.Name,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", m.Account.Namespace, m.Account.Name, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: cp.URL, InsecureSkipTLSVerify: true}
	kc.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "sa"}
	kc.CurrentContext = "c"
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}

	// Volume mounts become directories of dir holding the ConfigMap's keys.
	args := slices.Clone(c.Args)
	for _, vm := range c.VolumeMounts {
		v := volumeNamed(m.Deployment.Spec.Template.Spec, vm.Name)
		if v == nil || v.ConfigMap == nil {
			continue
		}
		local := filepath.Join(dir, vm.Name)
		if err := os.MkdirAll(local, 0o755); err != nil {
			t.Fatal(err)
		}
		for k, data := range m.Config.Data {
			if err := os.WriteFile(filepath.Join(local, k), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for i, a := range args {
			args[i] = strings.ReplaceAll(a, vm.MountPath, local)
		}
	}
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	args = append(args, "--sink", "stdout", "--listen-address", addr)

	const podName = "kubestream-7d9f8-abcde"
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "KUBECONFIG=" + kubeconfig}
	var cluster string
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
			if e.Name == "KUBESTREAM_CLUSTER_NAME" {
				cluster = e.Value
			}
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env = append(env, e.Name+"="+podName)
		case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
			// The kubelet writes the limit in bytes (divisor 1).
			env = append(env, fmt.Sprintf("%s=%d", e.Name, c.Resources.Limits.Memory().Value()))
		default:
			t.Fatalf("env %s: cannot fill in %+v", e.Name, e.ValueFrom)
		}
	}
	if cluster == "" {
		t.Fatal("the Deployment sets no KUBESTREAM_CLUSTER_NAME")
	}

	cmd := exec.Command(imageBinary(t), args...)
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr testbin.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	// Ready: the initial list of every kind was delivered.
	ready := false
	for deadline := time.Now().Add(60 * time.Second); !ready && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("kubestream %s exited before it was ready (%v); stderr:\n%s", strings.Join(args, " "), exitErr, stderr.String())
		default:
		}
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			ready = resp.StatusCode == http.StatusOK
		}
	}
	if !ready {
		t.Fatalf("kubestream %s never became ready; stderr:\n%s", strings.Join(args, " "), stderr.String())
	}

	name := fmt.Sprintf("packaging-%d", time.Now().UnixNano())
	if _, err := admin.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *kubestreamv1.Event
	timeout := time.After(60 * time.Second)
	for got == nil {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("kubestream exited before streaming configmap %s; stderr:\n%s", name, stderr.String())
			}
			ev := &kubestreamv1.Event{}
			if err := protojson.Unmarshal([]byte(line), ev); err != nil {
				t.Fatalf("stdout line is no Event: %v\n%s", err, line)
			}
			if ev.GetObject().GetName() == name && ev.GetOperation() == kubestreamv1.Operation_OPERATION_CREATED {
				got = ev
			}
		case <-timeout:
			t.Fatalf("no CREATED event of configmap %s; stderr:\n%s", name, stderr.String())
		}
	}
	if got.GetCluster() != cluster || got.GetInstance() != podName {
		t.Errorf("event cluster %q instance %q, want %q (KUBESTREAM_CLUSTER_NAME) and %q (POD_NAME)", got.GetCluster(), got.GetInstance(), cluster, podName)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range lines { // keep draining so kubestream never blocks on stdout
		}
	}()
	<-exited
	if exitErr != nil {
		t.Errorf("kubestream exited with %v on SIGTERM, want 0; stderr:\n%s", exitErr, stderr.String())
	}
	if s := stderr.String(); strings.Contains(s, "forbidden") {
		t.Errorf("kubestream logged a forbidden request under the ServiceAccount:\n%s", s)
	}
}

// TestEveryManifestIsChecked fails when a YAML file appears in deploy/ that
// no test here applies, so nothing ships unvalidated.
func TestEveryManifestIsChecked(t *testing.T) {
	checked := map[string]bool{
		"kustomization.yaml":                        true, // applied with -k deploy
		"examples/kafka-sasl/kustomization.yaml":    true, // applied with -k
		"examples/kafka-sasl/deployment-patch.yaml": true, // through the overlay
		"examples/kafka-sasl/secret.example.yaml":   true, // applied with -f
		"base/kustomization.yaml":                   true,
	}
	var base struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	decodeFile(t, "deploy/base/kustomization.yaml", &base)
	for _, r := range base.Resources {
		checked["base/"+r] = true
	}
	root := filepath.Join(repoRoot(t), "deploy")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || (filepath.Ext(p) != ".yaml" && filepath.Ext(p) != ".yml") {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if !checked[filepath.ToSlash(rel)] {
			t.Errorf("deploy/%s is applied by no test in test/deploy: add it to a kustomization or to this test", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
