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
	"strconv"
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
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/kubestream/kubestream/internal/controlplane"
	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/rbac"
)

// manifests are the objects of deploy/, decoded strictly.
type manifests struct {
	Namespace   corev1.Namespace
	Account     corev1.ServiceAccount
	Role        rbacv1.ClusterRole
	Binding     rbacv1.ClusterRoleBinding
	LeaseRole   rbacv1.Role
	LeaseBind   rbacv1.RoleBinding
	Config      corev1.ConfigMap
	Service     corev1.Service
	Deployment  appsv1.Deployment
	Budget      policyv1.PodDisruptionBudget
	SASLPatch   appsv1.Deployment
	SASLExample corev1.Secret
	// Resources are the files of deploy/base/kustomization.yaml, one
	// object each.
	Resources []string
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
	want := []string{"namespace.yaml", "serviceaccount.yaml", "clusterrole.yaml", "clusterrolebinding.yaml", "role.yaml", "rolebinding.yaml",
		"configmap.yaml", "service.yaml", "deployment.yaml", "poddisruptionbudget.yaml"}
	if got := slices.Sorted(slices.Values(k.Resources)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("deploy/base/kustomization.yaml resources %v, want %v", k.Resources, want)
	}
	decodeFile(t, "deploy/base/namespace.yaml", &m.Namespace)
	decodeFile(t, "deploy/base/serviceaccount.yaml", &m.Account)
	decodeFile(t, "deploy/base/clusterrole.yaml", &m.Role)
	decodeFile(t, "deploy/base/clusterrolebinding.yaml", &m.Binding)
	decodeFile(t, "deploy/base/role.yaml", &m.LeaseRole)
	decodeFile(t, "deploy/base/rolebinding.yaml", &m.LeaseBind)
	decodeFile(t, "deploy/base/configmap.yaml", &m.Config)
	decodeFile(t, "deploy/base/service.yaml", &m.Service)
	decodeFile(t, "deploy/base/deployment.yaml", &m.Deployment)
	decodeFile(t, "deploy/base/poddisruptionbudget.yaml", &m.Budget)
	decodeFile(t, "deploy/examples/kafka-sasl/deployment-patch.yaml", &m.SASLPatch)
	decodeFile(t, "deploy/examples/kafka-sasl/secret.example.yaml", &m.SASLExample)
	m.Resources = k.Resources
	return m
}

// lease returns the namespace and name of the Lease the Deployment's pods
// elect their leader with: the flags in args, else kubestream's defaults
// (the pod's namespace through POD_NAMESPACE).
func (m manifests) lease(t *testing.T) (namespace, name string) {
	t.Helper()
	args := m.Deployment.Spec.Template.Spec.Containers[0].Args
	name, ok := argValue(args, "leader-elect-resource-name")
	if !ok {
		name = flagDefault(t, "leader-elect-resource-name")
	}
	namespace, ok = argValue(args, "leader-elect-resource-namespace")
	if !ok {
		namespace = m.Deployment.Namespace
	}
	return namespace, name
}

// leaseRules are the permissions on Leases client-go's leader election
// needs, as rulesOf writes them: get and update on the one Lease, create
// (which cannot be limited by name).
func leaseRules(name string) sets.Set[string] {
	return sets.New(
		"coordination.k8s.io/leases:get["+name+"]",
		"coordination.k8s.io/leases:update["+name+"]",
		"coordination.k8s.io/leases:create",
	)
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
	// The registry's kinds, through the same rules `kubestream rbac` prints.
	want := sets.New[string]()
	for _, r := range rbac.Rules(kinds.All(), false) {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					want.Insert(g + "/" + res + ":" + v)
				}
			}
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

// TestLeaseRoleIsLeaderElection holds the Role to exactly what client-go's
// leader election does with the Lease (get, create, update), get and update
// limited to the Lease's name, in the namespace the pods look for it, and
// bound to the ServiceAccount only.
func TestLeaseRoleIsLeaderElection(t *testing.T) {
	m := loadManifests(t)
	namespace, name := m.lease(t)
	if m.LeaseRole.Namespace != namespace {
		t.Errorf("Role %s is in namespace %q, but the pods keep their Lease in %q", m.LeaseRole.Name, m.LeaseRole.Namespace, namespace)
	}
	got := sets.New[string]()
	for _, r := range m.LeaseRole.Rules {
		if len(r.NonResourceURLs) > 0 {
			t.Errorf("rule %+v: a Role cannot grant nonResourceURLs", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					key := g + "/" + res + ":" + v
					if len(r.ResourceNames) > 0 {
						key += "[" + strings.Join(r.ResourceNames, ",") + "]"
					}
					got.Insert(key)
				}
			}
		}
	}
	want := leaseRules(name)
	if extra := got.Difference(want); extra.Len() > 0 {
		t.Errorf("Role %s grants more than leader election needs: %v", m.LeaseRole.Name, sets.List(extra))
	}
	if missing := want.Difference(got); missing.Len() > 0 {
		t.Errorf("Role %s lacks: %v", m.LeaseRole.Name, sets.List(missing))
	}
	b := m.LeaseBind
	if b.Namespace != m.LeaseRole.Namespace || b.RoleRef.Kind != "Role" || b.RoleRef.Name != m.LeaseRole.Name || len(b.Subjects) != 1 ||
		b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != m.Account.Name || b.Subjects[0].Namespace != m.Account.Namespace {
		t.Errorf("RoleBinding %+v does not bind Role %s/%s to ServiceAccount %s/%s only", b, m.LeaseRole.Namespace, m.LeaseRole.Name, m.Account.Namespace, m.Account.Name)
	}
}

// TestDisruptionBudget checks that the PodDisruptionBudget covers the
// Deployment's pods and lets a drain evict one replica while the other
// stays to take over.
func TestDisruptionBudget(t *testing.T) {
	m := loadManifests(t)
	pdb, d := m.Budget, m.Deployment
	if pdb.Namespace != d.Namespace {
		t.Errorf("PodDisruptionBudget in namespace %q, Deployment in %q", pdb.Namespace, d.Namespace)
	}
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || sel.Empty() {
		t.Fatalf("PodDisruptionBudget selector %v: %v (an empty selector selects every pod of the namespace)", pdb.Spec.Selector, err)
	}
	if !sel.Matches(k8slabels.Set(d.Spec.Template.Labels)) {
		t.Errorf("PodDisruptionBudget selector %s does not select the Deployment's pods %v", sel, d.Spec.Template.Labels)
	}
	replicas := int(ptr.Deref(d.Spec.Replicas, 1))
	// The disruption controller rounds percentages up.
	var unavailable int
	switch {
	case pdb.Spec.MaxUnavailable != nil && pdb.Spec.MinAvailable == nil:
		unavailable, err = intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, replicas, true)
	case pdb.Spec.MinAvailable != nil && pdb.Spec.MaxUnavailable == nil:
		var available int
		available, err = intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, replicas, true)
		unavailable = replicas - available
	default:
		t.Fatalf("PodDisruptionBudget needs exactly one of minAvailable and maxUnavailable: %+v", pdb.Spec)
	}
	if err != nil {
		t.Fatal(err)
	}
	if unavailable < 1 || unavailable >= replicas {
		t.Errorf("of %d replicas the budget lets %d be evicted at once: want at least 1 (drains can proceed) and fewer than %d (one stays to take over)", replicas, unavailable, replicas)
	}
}

// TestDeploymentShape checks the promises the Deployment makes that the
// apiserver cannot judge: two replicas of which only the leader publishes, a
// rollout that keeps one of them running, replicas spread over nodes, probes
// on the endpoints kubestream serves, and settings kubestream knows.
func TestDeploymentShape(t *testing.T) {
	m := loadManifests(t)
	d := m.Deployment
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2: a standby that is synced takes over when the leader goes", d.Spec.Replicas)
	}
	replicas := int(ptr.Deref(d.Spec.Replicas, 1))
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || d.Spec.Strategy.RollingUpdate == nil {
		t.Errorf("strategy %+v, want RollingUpdate: with leader election replicas may run together, and Recreate stops them all", d.Spec.Strategy)
	} else {
		ru := d.Spec.Strategy.RollingUpdate
		// The Deployment controller rounds maxSurge up, maxUnavailable down.
		surge, err1 := intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, replicas, true)
		unavailable, err2 := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, replicas, false)
		if err1 != nil || err2 != nil {
			t.Errorf("rollingUpdate %+v: %v %v", ru, err1, err2)
		}
		if surge != 1 || unavailable > 1 || unavailable >= replicas {
			t.Errorf("rollingUpdate maxSurge %d maxUnavailable %d of %d replicas: want maxSurge 1 and maxUnavailable 0 or 1, so a replica keeps running through a rollout", surge, unavailable, replicas)
		}
	}
	ps := d.Spec.Template.Spec
	var spread bool
	if a := ps.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			sel, err := metav1.LabelSelectorAsSelector(w.PodAffinityTerm.LabelSelector)
			if err == nil && !sel.Empty() && sel.Matches(k8slabels.Set(d.Spec.Template.Labels)) && w.PodAffinityTerm.TopologyKey == corev1.LabelHostname {
				spread = true
			}
		}
		if len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0 {
			t.Errorf("required pod anti-affinity leaves a replica Pending on a single-node cluster and blocks a surge pod: use preferred")
		}
	}
	if !spread {
		t.Errorf("affinity %+v: want a preferred pod anti-affinity on %s selecting the Deployment's own pods, so replicas land on different nodes", ps.Affinity, corev1.LabelHostname)
	}
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

	// Leader election is on in args, where neither the environment nor the
	// config file can turn it off (flags win), and the Lease is in the pod's
	// namespace.
	if v, ok := boolArg(c.Args, "leader-elect"); !ok || !v {
		t.Errorf("args %v do not turn --leader-elect on: %d replicas would publish every change %d times", c.Args, replicas, replicas)
	}
	envFrom := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			envFrom[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if envFrom["POD_NAMESPACE"] != "metadata.namespace" {
		t.Errorf("POD_NAMESPACE is not the downward API's metadata.namespace: the Lease would not be in the namespace of the Role")
	}
	if envFrom["POD_NAME"] != "metadata.name" {
		t.Errorf("POD_NAME is not the downward API's metadata.name: events and the Lease would not name the pod")
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

// boolArg returns the value of a boolean flag in args: --name, --name=true
// or --name=false; the last one wins, as with pflag.
func boolArg(args []string, name string) (value, ok bool) {
	for _, a := range args {
		if a == "--"+name {
			value, ok = true, true
		} else if v, found := strings.CutPrefix(a, "--"+name+"="); found {
			b, err := strconv.ParseBool(v)
			value, ok = b && err == nil, true
		}
	}
	return value, ok
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
		if n := strings.Count(out, "(server dry run)"); n != len(m.Resources) {
			t.Errorf("dry run applied %d objects, want %d (%v):\n%s", n, len(m.Resources), m.Resources, out)
		}
		// The example's Secret and overlay, the Secret created the way
		// its comment says.
		out, warnings = kubectl(t, "apply", "--dry-run=server", "--validate=strict", "-f", "deploy/examples/kafka-sasl/secret.example.yaml")
		if warnings != "" || !strings.Contains(out, "(server dry run)") {
			t.Errorf("secret.example.yaml: %s%s", out, warnings)
		}
		out, warnings = kubectl(t, "apply", "--dry-run=server", "--validate=strict", "-k", "deploy/examples/kafka-sasl")
		if warnings != "" || strings.Count(out, "(server dry run)") != len(m.Resources) {
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
		leaseNS, leaseName := m.lease(t)
		// Everything the account may do beyond what every authenticated
		// account may do (discovery, self reviews) is exactly get, list and
		// watch on the watched kinds, and in the Lease's namespace also what
		// leader election needs.
		watched := sets.New[string]()
		for _, k := range kinds.All() {
			for _, v := range []string{"get", "list", "watch"} {
				watched.Insert(k.GVK.Group + "/" + k.Resource + ":" + v)
			}
		}
		nobody := "system:serviceaccount:" + m.Namespace.Name + ":nobody"
		for ns, want := range map[string]sets.Set[string]{"default": watched, leaseNS: watched.Union(leaseRules(leaseName))} {
			granted := rulesOf(t, cp, ns, user, groups).Difference(rulesOf(t, cp, ns, nobody, groups))
			if !granted.Equal(want) {
				t.Errorf("in namespace %s, service account %s may, beyond every account:\n  %v\nwant exactly:\n  %v", ns, user, sets.List(granted), sets.List(want))
			}
		}

		type check struct {
			verb, group, resource, sub, namespace string
			allowed                               bool
			name                                  string
		}
		var checks []check
		for _, k := range kinds.All() {
			for _, v := range []string{"get", "list", "watch"} {
				checks = append(checks, check{v, k.GVK.Group, k.Resource, "", "", true, ""})
				if k.Namespaced {
					checks = append(checks, check{v, k.GVK.Group, k.Resource, "", "default", true, ""})
				}
			}
		}
		checks = append(checks,
			check{"get", "", "secrets", "", "", false, ""},
			check{"list", "", "secrets", "", "", false, ""},
			check{"watch", "", "secrets", "", m.Namespace.Name, false, ""},
			check{"create", "", "pods", "", "default", false, ""},
			check{"delete", "", "pods", "", "default", false, ""},
			check{"update", "", "pods", "", "default", false, ""},
			check{"patch", "", "pods", "", "default", false, ""},
			check{"create", "", "pods", "exec", "default", false, ""},
			check{"get", "", "pods", "log", "default", false, ""},
			check{"update", "", "pods", "status", "default", false, ""},
			check{"patch", "", "nodes", "", "", false, ""},
			check{"get", "", "nodes", "proxy", "", false, ""},
			check{"update", "", "configmaps", "", "default", false, ""},
			check{"create", "", "configmaps", "", m.Namespace.Name, false, ""},
			check{"update", "apps", "deployments", "", "default", false, ""},
			check{"update", "apps", "deployments", "scale", "default", false, ""},
			check{"list", "apps", "replicasets", "", "", false, ""},
			check{"create", "", "serviceaccounts", "token", m.Namespace.Name, false, ""},
			check{"list", "", "events", "", "", false, ""},
			check{"escalate", "rbac.authorization.k8s.io", "clusterroles", "", "", false, ""},
			check{"impersonate", "", "users", "", "", false, ""},
		)
		// Leases: what client-go's leader election does, on the one Lease
		// in its namespace, and nothing else.
		const coord = "coordination.k8s.io"
		checks = append(checks,
			check{"get", coord, "leases", "", leaseNS, true, leaseName},
			check{"update", coord, "leases", "", leaseNS, true, leaseName},
			check{"create", coord, "leases", "", leaseNS, true, ""},
			check{"get", coord, "leases", "", leaseNS, false, "someone-else"},
			check{"update", coord, "leases", "", leaseNS, false, "someone-else"},
			check{"patch", coord, "leases", "", leaseNS, false, leaseName},
			check{"delete", coord, "leases", "", leaseNS, false, leaseName},
			check{"deletecollection", coord, "leases", "", leaseNS, false, ""},
			check{"list", coord, "leases", "", leaseNS, false, ""},
			check{"watch", coord, "leases", "", leaseNS, false, ""},
			check{"get", coord, "leases", "", "kube-system", false, leaseName},
			check{"update", coord, "leases", "", "kube-system", false, leaseName},
			check{"update", coord, "leases", "", "kube-node-lease", false, "node-1"},
			check{"create", coord, "leases", "", "default", false, ""},
			check{"update", coord, "leases", "", "default", false, leaseName},
			check{"list", coord, "leases", "", "", false, ""},
			check{"create", coord, "leasecandidates", "", leaseNS, false, ""},
			check{"create", "", "events", "", leaseNS, false, ""},
			check{"update", "", "configmaps", "", leaseNS, false, leaseName},
		)
		for _, c := range checks {
			sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
				User: user, Groups: groups,
				ResourceAttributes: &authzv1.ResourceAttributes{Verb: c.verb, Group: c.group, Resource: c.resource, Subresource: c.sub, Namespace: c.namespace, Name: c.name},
			}}
			res, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status.Allowed != c.allowed {
				t.Errorf("%s %s/%s/%s %q in %q: allowed=%v, want %v", c.verb, c.group, c.resource, c.sub, c.name, c.namespace, res.Status.Allowed, c.allowed)
			}
		}
	})

	t.Run("binary as the service account", func(t *testing.T) { runAsDeployment(t, m, cp, admin) })
}

type warningFunc func(string)

func (f warningFunc) HandleWarningHeader(_ int, _ string, msg string) { f(msg) }

// rulesOf returns what a user may do on resources in a namespace (and
// cluster-wide), as group/resource:verb (resourceNames appended when the
// rule names objects), from a SelfSubjectRulesReview made while
// impersonating the user.
func rulesOf(t *testing.T, cp *controlplane.ControlPlane, namespace, user string, groups []string) sets.Set[string] {
	t.Helper()
	cfg := cp.RestConfig()
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	client := kubernetes.NewForConfigOrDie(cfg)
	rev, err := client.AuthorizationV1().SelfSubjectRulesReviews().Create(context.Background(),
		&authzv1.SelfSubjectRulesReview{Spec: authzv1.SelfSubjectRulesReviewSpec{Namespace: namespace}}, metav1.CreateOptions{})
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
// would: as many replicas as it has, each with the Deployment's args, its
// environment (downward API values filled in: a pod name of its own, the
// namespace), the ConfigMap as the config file, and a token of the
// ServiceAccount. Only the sink is switched to stdout (no broker here) and
// the listen address to a free loopback port. The replicas must become
// ready and elect one leader in the Lease the Role grants; only the leader
// streams a change made afterwards (so watch is allowed too), stamped with
// the Deployment's cluster name and its pod name. On SIGTERM the leader
// exits 0 having released the Lease, and a standby takes over and streams
// the next change. No replica logs a forbidden request.
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
	n := int(ptr.Deref(m.Deployment.Spec.Replicas, 1))
	if n < 2 {
		t.Fatalf("the Deployment runs %d replica: nothing to hand over to", n)
	}
	ports, err := freePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	leaseNS, leaseName := m.lease(t)
	shutdown := mustDuration(t, flagDefault(t, "shutdown-timeout"))

	var cluster string
	replicas := make([]*replica, n)
	for i := range replicas {
		name := fmt.Sprintf("kubestream-7d9f8-pod%d", i)
		var env []string
		env, cluster = podEnv(t, m, name)
		env = append(env, "PATH="+os.Getenv("PATH"), "HOME="+dir, "KUBECONFIG="+kubeconfig)
		addr := fmt.Sprintf("127.0.0.1:%d", ports[i])
		replicas[i] = startReplica(t, name, addr, append(slices.Clone(args), "--sink", "stdout", "--listen-address", addr), env)
	}
	if cluster == "" {
		t.Fatal("the Deployment sets no KUBESTREAM_CLUSTER_NAME")
	}
	defer func() {
		for _, r := range replicas {
			if s := r.stderr.String(); strings.Contains(s, "forbidden") {
				t.Errorf("%s logged a forbidden request under the ServiceAccount:\n%s", r.name, s)
			}
		}
	}()
	// Ready: a standby once synced, the leader once its first round was
	// delivered.
	for _, r := range replicas {
		r.waitReady(t, 60*time.Second)
	}

	leader := waitLeader(t, admin, leaseNS, leaseName, replicas)
	var standbys []*replica
	for _, r := range replicas {
		if r != leader {
			standbys = append(standbys, r)
		}
	}
	if got := leader.metric(t, "kubestream_leader"); got != "1" {
		t.Errorf("%s holds the Lease, kubestream_leader %s, want 1", leader.name, got)
	}
	for _, r := range standbys {
		if got := r.metric(t, "kubestream_leader"); got != "0" {
			t.Errorf("standby %s: kubestream_leader %s, want 0", r.name, got)
		}
	}

	first := fmt.Sprintf("packaging-%d", time.Now().UnixNano())
	if _, err := admin.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: first}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := leader.waitEvent(t, 60*time.Second, func(ev *kubestreamv1.Event) bool {
		return ev.GetObject().GetName() == first && ev.GetOperation() == kubestreamv1.Operation_OPERATION_CREATED
	})
	if got.GetCluster() != cluster || got.GetInstance() != leader.name {
		t.Errorf("event cluster %q instance %q, want %q (KUBESTREAM_CLUSTER_NAME) and %q (POD_NAME)", got.GetCluster(), got.GetInstance(), cluster, leader.name)
	}
	for _, r := range standbys {
		if evs := r.published(); len(evs) > 0 {
			t.Errorf("standby %s published %d events while %s leads, first: %v", r.name, len(evs), leader.name, evs[0])
		}
	}

	// Handover: the leader drains, exits 0 and releases the Lease before it
	// exits, so a standby need not wait for the lease to expire.
	if err := leader.stop(t, shutdown+15*time.Second); err != nil {
		t.Errorf("leader %s exited with %v on SIGTERM, want 0; stderr:\n%s", leader.name, err, leader.stderr.String())
	}
	lease, err := admin.CoordinationV1().Leases(leaseNS).Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := ptr.Deref(lease.Spec.HolderIdentity, ""); strings.HasPrefix(h, leader.name+"_") {
		t.Errorf("%s exited on SIGTERM and still holds Lease %s/%s (%q): standbys wait for it to expire", leader.name, leaseNS, leaseName, h)
	}
	next := waitLeader(t, admin, leaseNS, leaseName, standbys)
	second := fmt.Sprintf("packaging-%d", time.Now().UnixNano())
	if _, err := admin.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: second}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Created while the new leader's first round may still run: as a
	// snapshot of that round or as a change, either way from the new leader.
	got = next.waitEvent(t, 60*time.Second, func(ev *kubestreamv1.Event) bool {
		op := ev.GetOperation()
		return ev.GetObject().GetName() == second && (op == kubestreamv1.Operation_OPERATION_CREATED || op == kubestreamv1.Operation_OPERATION_SNAPSHOT)
	})
	if got.GetInstance() != next.name {
		t.Errorf("after the handover, event instance %q, want %q", got.GetInstance(), next.name)
	}
	for _, r := range standbys {
		if err := r.stop(t, shutdown+15*time.Second); err != nil {
			t.Errorf("%s exited with %v on SIGTERM, want 0; stderr:\n%s", r.name, err, r.stderr.String())
		}
	}
}

// podEnv is the container's environment as the kubelet would set it for
// a pod of the given name, and the cluster name it sets.
func podEnv(t *testing.T, m manifests, podName string) (env []string, cluster string) {
	t.Helper()
	c := m.Deployment.Spec.Template.Spec.Containers[0]
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
			if e.Name == "KUBESTREAM_CLUSTER_NAME" {
				cluster = e.Value
			}
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env = append(env, e.Name+"="+podName)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env = append(env, e.Name+"="+m.Deployment.Namespace)
		case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
			// The kubelet writes the limit in bytes (divisor 1).
			env = append(env, fmt.Sprintf("%s=%d", e.Name, c.Resources.Limits.Memory().Value()))
		default:
			t.Fatalf("env %s: cannot fill in %+v", e.Name, e.ValueFrom)
		}
	}
	return env, cluster
}

// replica is one kubestream process standing in for a pod.
type replica struct {
	name, addr string
	cmd        *exec.Cmd
	stderr     testbin.SyncBuffer
	exited     chan struct{}
	exitErr    error // set before exited is closed

	mu     sync.Mutex
	events []*kubestreamv1.Event
	bad    string // a stdout line that is no Event
}

func startReplica(t *testing.T, name, addr string, args, env []string) *replica {
	t.Helper()
	r := &replica{name: name, addr: addr, exited: make(chan struct{})}
	r.cmd = exec.Command(imageBinary(t), args...)
	r.cmd.Env = env
	r.cmd.Stderr = &r.stderr
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			ev := &kubestreamv1.Event{}
			err := protojson.Unmarshal(sc.Bytes(), ev)
			r.mu.Lock()
			if err != nil && r.bad == "" {
				r.bad = fmt.Sprintf("%v\n%s", err, sc.Text())
			} else if err == nil {
				r.events = append(r.events, ev)
			}
			r.mu.Unlock()
		}
		r.exitErr = r.cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-r.exited:
		default:
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
	})
	return r
}

func (r *replica) published() []*kubestreamv1.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *replica) failIfExited(t *testing.T, doing string) {
	t.Helper()
	select {
	case <-r.exited:
		t.Fatalf("%s exited (%v) %s; stderr:\n%s", r.name, r.exitErr, doing, r.stderr.String())
	default:
	}
}

func (r *replica) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		r.failIfExited(t, "before it was ready")
		if resp, err := http.Get("http://" + r.addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("%s never became ready; stderr:\n%s", r.name, r.stderr.String())
}

// waitEvent returns the first event r published that matches.
func (r *replica) waitEvent(t *testing.T, timeout time.Duration, match func(*kubestreamv1.Event) bool) *kubestreamv1.Event {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		r.mu.Lock()
		bad := r.bad
		for _, ev := range r.events {
			if match(ev) {
				r.mu.Unlock()
				return ev
			}
		}
		r.mu.Unlock()
		if bad != "" {
			t.Fatalf("%s: stdout line is no Event: %s", r.name, bad)
		}
		r.failIfExited(t, "before publishing the event")
	}
	t.Fatalf("%s published no such event in %s; stderr:\n%s", r.name, timeout, r.stderr.String())
	return nil
}

// metric returns the value of an unlabelled metric on /metrics.
func (r *replica) metric(t *testing.T, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + r.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	t.Fatalf("%s: no metric %s on /metrics", r.name, name)
	return ""
}

// stop sends SIGTERM and waits for the exit.
func (r *replica) stop(t *testing.T, timeout time.Duration) error {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.exited:
		return r.exitErr
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s of SIGTERM; stderr:\n%s", r.name, timeout, r.stderr.String())
		return nil
	}
}

// waitLeader returns the replica of candidates holding the Lease.
func waitLeader(t *testing.T, admin kubernetes.Interface, namespace, name string, candidates []*replica) *replica {
	t.Helper()
	var holder string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		lease, err := admin.CoordinationV1().Leases(namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		if err == nil {
			holder = ptr.Deref(lease.Spec.HolderIdentity, "")
		}
		for _, r := range candidates {
			// The identity is the pod name and a random suffix.
			if strings.HasPrefix(holder, r.name+"_") {
				return r
			}
			r.failIfExited(t, "while waiting for a leader")
		}
	}
	t.Fatalf("none of %d replicas took Lease %s/%s (holder %q)", len(candidates), namespace, name, holder)
	return nil
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
		// The chart is rendered and applied by test/helm, the monitoring
		// rules run under promtool in test/monitoring.
		if strings.HasPrefix(filepath.ToSlash(rel), "helm/") || strings.HasPrefix(filepath.ToSlash(rel), "monitoring/") {
			return nil
		}
		if !checked[filepath.ToSlash(rel)] {
			t.Errorf("deploy/%s is applied by no test in test/deploy: add it to a kustomization or to this test", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
