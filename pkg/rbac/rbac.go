// Package rbac derives the least-privilege ClusterRole of a kind selection:
// get, list and watch on exactly the watched resources, and on custom
// resource definitions when patterns pick up kinds while running.
package rbac

import (
	"sort"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubestream/kubestream/pkg/discover"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// ReadVerbs are what an informer needs.
var ReadVerbs = []string{"get", "list", "watch"}

// Rules returns one rule per API group, groups and resources sorted.
func Rules(ks []kinds.Kind, watchDefinitions bool) []rbacv1.PolicyRule {
	byGroup := map[string]map[string]bool{}
	add := func(group, resource string) {
		if byGroup[group] == nil {
			byGroup[group] = map[string]bool{}
		}
		byGroup[group][resource] = true
	}
	for _, k := range ks {
		add(k.GVK.Group, k.GVR().Resource)
	}
	if watchDefinitions {
		add(discover.Definitions.Group, discover.Definitions.Resource)
	}
	groups := make([]string, 0, len(byGroup))
	for g := range byGroup {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	rules := make([]rbacv1.PolicyRule, 0, len(groups))
	for _, g := range groups {
		var res []string
		for r := range byGroup[g] {
			res = append(res, r)
		}
		sort.Strings(res)
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{g}, Resources: res, Verbs: append([]string(nil), ReadVerbs...)})
	}
	return rules
}

// ClusterRole is the named ClusterRole of Rules.
func ClusterRole(name string, ks []kinds.Kind, watchDefinitions bool) *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": "kubestream"}},
		Rules:      Rules(ks, watchDefinitions),
	}
}
