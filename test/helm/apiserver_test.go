package helm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubestream/kubestream/internal/controlplane"
)

// kubectlRunner runs the control plane's kubectl.
type kubectlRunner struct {
	bin, kubeconfig string
}

func (k kubectlRunner) run(t *testing.T, stdin string, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(k.bin, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String(), e.String()
}

// TestChartOnAPIServer renders every value set and sends it to a real
// kube-apiserver: a server-side dry run with strict field validation (the
// Prometheus Operator kinds through minimal CRDs), then the RBAC objects for
// real, and then the rendered ServiceAccount's effective permissions: get,
// list and watch on exactly the configured kinds (and rbac.extraRules),
// the Lease when leader election is on, and nothing more.
func TestChartOnAPIServer(t *testing.T) {
	ctx := context.Background()
	binDir, err := controlplane.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := controlplane.Start(ctx, controlplane.Options{BinDir: binDir})
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(cp.Stop)
	k := kubectlRunner{bin: filepath.Join(binDir, "kubectl"), kubeconfig: cp.Kubeconfig}
	admin := kubernetes.NewForConfigOrDie(cp.RestConfig())

	crds, err := os.ReadFile(filepath.Join(repoRoot(t), "test", "helm", "testdata", "crds.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	k.run(t, string(crds), "apply", "-f", "-")
	k.run(t, "", "wait", "--for=condition=Established", "--timeout=60s",
		"crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")

	for _, v := range valueSets {
		t.Run(v.name, func(t *testing.T) {
			manifest := render(t, v)
			objs := objects(t, manifest)
			if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v.namespace}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			out, warnings := k.run(t, manifest, "apply", "--dry-run=server", "--validate=strict", "-f", "-")
			if warnings != "" {
				t.Errorf("the apiserver warned:\n%s", warnings)
			}
			if n := strings.Count(out, "(server dry run)"); n != len(objs) {
				t.Errorf("dry run applied %d objects, want %d:\n%s", n, len(objs), out)
			}

			// The RBAC objects for real, to review what they grant.
			var rbac []string
			for _, doc := range strings.Split(manifest, "\n---\n") {
				for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} {
					if strings.Contains(doc, "\nkind: "+kind+"\n") {
						rbac = append(rbac, doc)
					}
				}
			}
			k.run(t, strings.Join(rbac, "\n---\n"), "apply", "--validate=strict", "-f", "-")

			sa := find(t, objs, "ServiceAccount")
			user := "system:serviceaccount:" + v.namespace + ":" + sa.GetName()
			groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + v.namespace, "system:authenticated"}
			nobody := "system:serviceaccount:" + v.namespace + ":nobody"

			kindsArg, _ := argValue(deploymentOf(t, objs).Spec.Template.Spec.Containers[0].Args, "kinds")
			watched := sets.New[string]()
			type gr struct{ group, resource string }
			var configured []gr
			for _, kind := range strings.Split(kindsArg, ",") {
				resource, group, _ := strings.Cut(kind, ".")
				configured = append(configured, gr{group, resource})
				for _, verb := range []string{"get", "list", "watch"} {
					watched.Insert(group + "/" + resource + ":" + verb)
				}
			}
			var extra []gr
			if v.name == "nats" { // rbac.extraRules
				extra = append(extra, gr{"batch", "jobs"})
				for _, verb := range []string{"get", "list", "watch"} {
					watched.Insert("batch/jobs:" + verb)
				}
			}
			leaseNS := "default"
			inLeaseNS := watched.Clone()
			if find(t, objs, "Role") != nil {
				leaseNS = v.namespace
				inLeaseNS = watched.Union(sets.New("coordination.k8s.io/leases:get[kubestream]",
					"coordination.k8s.io/leases:update[kubestream]", "coordination.k8s.io/leases:create"))
			}
			for ns, want := range map[string]sets.Set[string]{"kube-system": watched, leaseNS: inLeaseNS} {
				granted := rulesOf(t, cp, ns, user, groups).Difference(rulesOf(t, cp, ns, nobody, groups))
				if !granted.Equal(want) {
					t.Errorf("in namespace %s, %s may, beyond every account:\n  %v\nwant exactly:\n  %v", ns, user, sets.List(granted), sets.List(want))
				}
			}

			// The same through SubjectAccessReviews, with what must stay
			// refused next to it.
			type check struct {
				verb, group, resource, sub, namespace string
				allowed                               bool
			}
			var checks []check
			for _, c := range configured {
				for _, verb := range []string{"get", "list", "watch"} {
					checks = append(checks, check{verb, c.group, c.resource, "", "", true}, check{verb, c.group, c.resource, "", "default", true})
				}
				for _, verb := range []string{"create", "update", "patch", "delete"} {
					checks = append(checks, check{verb, c.group, c.resource, "", "default", false})
				}
				checks = append(checks, check{"update", c.group, c.resource, "status", "default", false})
			}
			has := func(group, resource string) bool {
				for _, c := range append(configured, extra...) {
					if c.group == group && c.resource == resource {
						return true
					}
				}
				return false
			}
			for _, other := range []gr{{"", "secrets"}, {"", "pods"}, {"apps", "deployments"}, {"", "configmaps"}, {"apps", "replicasets"}, {"", "nodes"}, {"batch", "jobs"}, {"cert-manager.io", "issuers"}} {
				if !has(other.group, other.resource) {
					checks = append(checks, check{"list", other.group, other.resource, "", "", false}, check{"get", other.group, other.resource, "", "default", false})
				}
			}
			checks = append(checks, check{"get", "", "pods", "log", "default", false}, check{"create", "", "pods", "exec", "default", false},
				check{"list", "", "events", "", "", false}, check{"escalate", "rbac.authorization.k8s.io", "clusterroles", "", "", false})
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
	}
}

// argValue returns the value of --name=value in args.
func argValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// rulesOf returns what a user may do in a namespace (and cluster-wide) as
// group/resource:verb, resourceNames appended in brackets, from a
// SelfSubjectRulesReview made while impersonating the user.
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
