package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// TestRBACCommandGrantsWhatRunNeeds: the ClusterRole `kubestream rbac`
// prints for a selection with a pattern, applied and bound to a fresh
// ServiceAccount, is enough for `kubestream run` with that account's token
// to start and stream the custom resources; the same role without the
// custom resource's rule makes the run exit 2 naming the kind and the fix.
func TestRBACCommandGrantsWhatRunNeeds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const group, plural, kind = "rbac.example.com", "sprockets", "Sprocket"
	const resource = plural + "." + group
	dyn := dynamic.NewForConfigOrDie(cp.RestConfig())
	gvr := installCRD(t, ctx, dyn, group, plural, kind)
	ns := fmt.Sprintf("e2e-rbac-%d", time.Now().UnixNano())
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	sprocket := func(name string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": group + "/v1", "kind": kind,
			"metadata": map[string]any{"name": name, "namespace": ns}, "spec": map[string]any{"teeth": int64(12)}}}
	}
	pre, err := dyn.Resource(gvr).Namespace(ns).Create(ctx, sprocket("before"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	res := run(t, 30*time.Second, "rbac", "--kubeconfig", cp.Kubeconfig, "--kinds", "pods,*.example.com", "--name", "kubestream-"+ns)
	if res.code != 0 {
		t.Fatalf("kubestream rbac: exit %d; stderr:\n%s", res.code, res.stderr)
	}
	t.Logf("kubestream rbac --kinds 'pods,*.example.com':\n%s", res.stdout)
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict([]byte(res.stdout), role); err != nil {
		t.Fatalf("kubestream rbac printed no ClusterRole: %v\n%s", err, res.stdout)
	}
	read := []string{"get", "list", "watch"}
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: read},
		{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: read},
		{APIGroups: []string{group}, Resources: []string{plural}, Verbs: read},
	}
	if role.Kind != "ClusterRole" || role.APIVersion != "rbac.authorization.k8s.io/v1" || role.Name != "kubestream-"+ns || !sameRules(role.Rules, want) {
		t.Fatalf("printed role %s %s %s with rules %v,\nwant a ClusterRole kubestream-%s with exactly %v", role.APIVersion, role.Kind, role.Name, role.Rules, ns, want)
	}
	if !strings.Contains(res.stdout, "# resolved to: pods, "+resource) {
		t.Errorf("rbac output does not say what the selection resolved to:\n%s", res.stdout)
	}

	t.Run("the printed role is enough", func(t *testing.T) {
		kubeconfig := serviceAccountKubeconfig(t, ctx, ns, "streamer", role)
		s := startStream(t, ctx, "--kubeconfig", kubeconfig, "--kinds", "pods,*.example.com", "--namespace", ns,
			"--sink", "stdout", "--listen-address", "127.0.0.1:0", "--resync", "0", "--cluster-name", "rbac")
		var got []string
		note := func(ev *kubestreamv1.Event) *kubestreamv1.Event {
			line := strings.TrimPrefix(ev.GetOperation().String(), "OPERATION_")
			if m := ev.GetReplay(); m != nil {
				line += fmt.Sprintf(" %s kinds=%v counts=%v", m.GetReason(), m.GetKinds(), m.GetObjectCounts())
			} else {
				line += " " + ev.GetObject().GetResource() + "/" + ev.GetObject().GetNamespace() + "/" + ev.GetObject().GetName()
			}
			got = append(got, line)
			return ev
		}
		begin := note(s.next(ctx, "REPLAY_BEGIN"))
		if m := begin.GetReplay(); begin.GetOperation() != kubestreamv1.Operation_OPERATION_REPLAY_BEGIN || !slices.Equal(m.GetKinds(), []string{"pods", resource}) {
			t.Fatalf("first event %v, want the initial round's begin covering pods and %s", got, resource)
		}
		snap := note(s.next(ctx, "the snapshot of the sprocket"))
		if snap.GetOperation() != kubestreamv1.Operation_OPERATION_SNAPSHOT || snap.GetObject().GetUid() != string(pre.GetUID()) || snap.GetObject().GetResource() != resource {
			t.Fatalf("events %v, want the snapshot of %s/%s/before", got, resource, ns)
		}
		if end := note(s.next(ctx, "REPLAY_END")); end.GetOperation() != kubestreamv1.Operation_OPERATION_REPLAY_END {
			t.Fatalf("events %v, want the initial round's end after one snapshot", got)
		}
		live, err := dyn.Resource(gvr).Namespace(ns).Create(ctx, sprocket("live"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ev := note(s.next(ctx, "the live sprocket's CREATED")); ev.GetOperation() != kubestreamv1.Operation_OPERATION_CREATED || ev.GetObject().GetUid() != string(live.GetUID()) {
			t.Fatalf("events %v, want CREATED of the live sprocket", got)
		}
		t.Logf("stream as the ServiceAccount:\n%s", strings.Join(got, "\n"))

		// A kind the pattern picks up later is not in the role: kubestream
		// keeps streaming, says why it does not watch the kind, and watches
		// it once the role printed again is applied and a definition changes.
		const gears = "gears." + group
		installCRD(t, ctx, dyn, group, "gears", "Gear")
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(s.stderr.String(), "not allowed to list "+gears); {
			if time.Now().After(deadline) {
				t.Fatalf("no log line saying %s may not be listed within 30s; stderr:\n%s", gears, s.stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		select {
		case <-s.exited:
			t.Fatalf("kubestream exited when a kind it may not list appeared: %v; stderr:\n%s", s.waitErr, s.stderr.String())
		default:
		}
		for _, l := range lines(s.stderr.String()) {
			if strings.Contains(l, gears) {
				t.Logf("stderr: %s", l)
				if !strings.Contains(l, "kubestream rbac --kinds "+gears) {
					t.Errorf("the log line does not name the fix (kubestream rbac --kinds %s): %s", gears, l)
				}
			}
		}
		again := run(t, 30*time.Second, "rbac", "--kubeconfig", cp.Kubeconfig, "--kinds", "pods,*.example.com", "--name", role.Name)
		updated := &rbacv1.ClusterRole{}
		if err := yaml.UnmarshalStrict([]byte(again.stdout), updated); err != nil || again.code != 0 {
			t.Fatalf("kubestream rbac again: exit %d, %v\n%s%s", again.code, err, again.stdout, again.stderr)
		}
		if want := []rbacv1.PolicyRule{want[0], want[1], {APIGroups: []string{group}, Resources: []string{"gears", plural}, Verbs: read}}; !sameRules(updated.Rules, want) {
			t.Fatalf("role printed again has rules %v, want %v", updated.Rules, want)
		}
		current, err := client.RbacV1().ClusterRoles().Get(ctx, role.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		current.Rules = updated.Rules
		if _, err := client.RbacV1().ClusterRoles().Update(ctx, current, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitAllowed(t, ctx, "system:serviceaccount:"+ns+":streamer", "list", group, "gears", ns)
		// The next change of any definition is when kubestream tries again.
		if _, err := dyn.Resource(crdGVR).Patch(ctx, gears, "application/merge-patch+json", []byte(`{"metadata":{"labels":{"touched":"yes"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
		defer tcancel()
		ev := note(s.next(tctx, "the first round of "+gears+" after the role was applied again"))
		if m := ev.GetReplay(); ev.GetOperation() != kubestreamv1.Operation_OPERATION_REPLAY_BEGIN || !slices.Equal(m.GetKinds(), []string{gears}) || m.GetReason() != kubestreamv1.ReplayReason_REPLAY_REASON_INITIAL {
			t.Errorf("after the role was applied again: %v, want the INITIAL round of %s", got, gears)
		}
		t.Logf("stream as the ServiceAccount, after the role was applied again:\n%s", strings.Join(got, "\n"))
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.exited:
			if s.waitErr != nil {
				t.Errorf("exit after SIGTERM: %v; stderr:\n%s", s.waitErr, s.stderr.String())
			}
		case <-ctx.Done():
			t.Fatalf("no exit after SIGTERM; stderr:\n%s", s.stderr.String())
		}
	})

	t.Run("without the custom resource's rule", func(t *testing.T) {
		lacking := role.DeepCopy()
		lacking.Name += "-lacking"
		lacking.Rules = slices.DeleteFunc(lacking.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.APIGroups, group) })
		kubeconfig := serviceAccountKubeconfig(t, ctx, ns, "lacking", lacking)
		res := run(t, 60*time.Second, "run", "--kubeconfig", kubeconfig, "--kinds", "pods,*.example.com", "--namespace", ns,
			"--sink", "stdout", "--listen-address", "127.0.0.1:0", "--resync", "0")
		t.Logf("exit %d, stderr:\n%s", res.code, res.stderr)
		if res.code != 2 {
			t.Fatalf("exit code %d, want 2; stderr:\n%s", res.code, res.stderr)
		}
		if res.stdout != "" {
			t.Errorf("stdout = %q, want nothing", res.stdout)
		}
		// Kinds are checked in order, patterns' sorted by name: the first
		// custom kind the role lacks is the one named (gears, once the
		// previous subtest installed it, sorts before sprockets).
		missing := resource
		if strings.Contains(res.stderr, "gears."+group) {
			missing = "gears." + group
		}
		assertOneErrorLine(t, res.stderr, "not allowed to list "+missing, "kubestream rbac --kinds "+missing)
	})

	t.Run("unknown kind", func(t *testing.T) {
		res := run(t, 30*time.Second, "run", "--kubeconfig", cp.Kubeconfig, "--kinds", "podz", "--sink", "stdout", "--listen-address", "127.0.0.1:0", "--resync", "0")
		t.Logf("exit %d, stderr:\n%s", res.code, res.stderr)
		if res.code != 2 {
			t.Fatalf("exit code %d, want 2; stderr:\n%s", res.code, res.stderr)
		}
		assertOneErrorLine(t, res.stderr, `unknown kind "podz"`, "did you mean pods")
	})
}

func sameRules(got, want []rbacv1.PolicyRule) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		if !slices.Equal(g.APIGroups, w.APIGroups) || !slices.Equal(g.Resources, w.Resources) || !slices.Equal(g.Verbs, w.Verbs) ||
			len(g.ResourceNames)+len(g.NonResourceURLs) > 0 {
			return false
		}
	}
	return true
}

// serviceAccountKubeconfig creates the ClusterRole role, a ServiceAccount
// bound to it, and a kubeconfig with a token of that account (TokenRequest),
// and waits until the binding is in effect.
func serviceAccountKubeconfig(t *testing.T, ctx context.Context, ns, account string, role *rbacv1.ClusterRole) string {
	t.Helper()
	bg := context.Background()
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: account}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("apply the role: %v", err)
	}
	t.Cleanup(func() { _ = client.RbacV1().ClusterRoles().Delete(bg, role.Name, metav1.DeleteOptions{}) })
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: account, Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.RbacV1().ClusterRoleBindings().Delete(bg, role.Name, metav1.DeleteOptions{}) })
	tok, err := client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, account, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitAllowed(t, ctx, "system:serviceaccount:"+ns+":"+account, "watch", "", "pods", ns)
	return writeKubeconfig(t, func(cfg *clientcmdapi.Config) {
		cfg.AuthInfos = map[string]*clientcmdapi.AuthInfo{account: {Token: tok.Status.Token}}
		for _, c := range cfg.Contexts {
			c.AuthInfo = account
		}
	})
}

// installCRD creates a namespaced custom resource definition with a status
// subresource, waits until its kind is served, and deletes it at the end of
// the test.
func installCRD(t *testing.T, ctx context.Context, dyn dynamic.Interface, group, plural, kind string) schema.GroupVersionResource {
	t.Helper()
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": plural + "." + group},
		"spec": map[string]any{
			"group": group, "scope": "Namespaced",
			"names": map[string]any{"plural": plural, "singular": strings.ToLower(kind), "kind": kind, "listKind": kind + "List"},
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"subresources": map[string]any{"status": map[string]any{}},
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object", "x-kubernetes-preserve-unknown-fields": true,
				}},
			}},
		},
	}}
	if _, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create CRD %s.%s: %v", plural, group, err)
	}
	t.Cleanup(func() {
		_ = dyn.Resource(crdGVR).Delete(context.Background(), plural+"."+group, metav1.DeleteOptions{})
	})
	gvr := schema.GroupVersionResource{Group: group, Version: "v1", Resource: plural}
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			return gvr
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRD %s.%s not served within 30s: %v", plural, group, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitAllowed waits until user may do verb on a resource.
func waitAllowed(t *testing.T, ctx context.Context, user, verb, group, resource, ns string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		sar, err := client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: user, ResourceAttributes: &authzv1.ResourceAttributes{Verb: verb, Group: group, Resource: resource, Namespace: ns},
		}}, metav1.CreateOptions{})
		if err == nil && sar.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s may not %s %s after 30s: %v %v", user, verb, resource, sar, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
