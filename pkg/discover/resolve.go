package discover

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"

	"github.com/kubestream/kubestream/pkg/kinds"
)

// resource is one served resource (one version of it), from discovery.
type resource struct {
	gvk        schema.GroupVersionKind
	plural     string
	singular   string
	shortNames []string
	namespaced bool
	verbs      []string
	// preferred marks the group's preferred version.
	preferred bool
	// order is the group's position in discovery: kubectl's priority when
	// a short name is served by several groups.
	order int
}

// qualified is kubectl's full name: "pods", "deployments.apps".
func (r resource) qualified() string {
	if r.gvk.Group == "" {
		return r.plural
	}
	return r.plural + "." + r.gvk.Group
}

func (r resource) watchable() bool {
	return slices.Contains(r.verbs, "list") && slices.Contains(r.verbs, "watch")
}

// Index is what discovery said, at one moment.
type Index struct {
	resources []resource
	// failedGroups could not be discovered (an aggregated API down).
	failedGroups map[string]error
}

// Discovery is the part of client-go's discovery client Discover uses.
type Discovery interface {
	ServerGroupsAndResources() ([]*metav1.APIGroup, []*metav1.APIResourceList, error)
}

// Discover reads the cluster's resources. Groups whose discovery failed (an
// aggregated API that is down) are recorded, not fatal: patterns skip them
// and names in them fail with the reason.
func Discover(d Discovery) (*Index, error) {
	groups, lists, err := d.ServerGroupsAndResources()
	idx := &Index{failedGroups: map[string]error{}}
	if err != nil {
		var gdf *discovery.ErrGroupDiscoveryFailed
		if !errors.As(err, &gdf) {
			return nil, fmt.Errorf("discover the cluster's resources: %w", err)
		}
		for gv, e := range gdf.Groups {
			idx.failedGroups[gv.Group] = e
		}
	}
	preferred := map[string]string{}
	order := map[string]int{}
	for i, g := range groups {
		preferred[g.Name] = g.PreferredVersion.Version
		order[g.Name] = i
	}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, ar := range l.APIResources {
			if strings.Contains(ar.Name, "/") {
				continue // a subresource
			}
			group, version := gv.Group, gv.Version
			if ar.Group != "" {
				group = ar.Group
			}
			if ar.Version != "" {
				version = ar.Version
			}
			idx.resources = append(idx.resources, resource{
				gvk:        schema.GroupVersionKind{Group: group, Version: version, Kind: ar.Kind},
				plural:     ar.Name,
				singular:   ar.SingularName,
				shortNames: ar.ShortNames,
				namespaced: ar.Namespaced,
				verbs:      ar.Verbs,
				preferred:  preferred[group] == version,
				order:      order[group],
			})
		}
	}
	return idx, nil
}

// NewIndex builds an index from resource lists, as discovery returns them
// (for tests and for kubestream rbac without a cluster).
func NewIndex(groups []*metav1.APIGroup, lists []*metav1.APIResourceList) *Index {
	d := &staticDiscovery{groups: groups, lists: lists}
	idx, _ := Discover(d)
	return idx
}

// Resolve returns the kinds the selection picks, in a stable order: named
// kinds first as named, then pattern matches sorted by name (patterns may
// match nothing). A name that is unknown, or served without list and watch,
// fails with a one-line error naming the closest matches.
func (idx *Index) Resolve(sel Selection) ([]kinds.Kind, error) {
	var out []kinds.Kind
	seen := map[string]bool{}
	add := func(r resource) {
		k := kindOf(r, idx.metadataOnly(sel, r))
		if !seen[k.Resource] {
			seen[k.Resource] = true
			out = append(out, k)
		}
	}
	var problems []string
	for _, name := range sel.Names {
		r, err := idx.lookup(name)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		add(r)
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	var matched []resource
	for _, r := range idx.resources {
		if !r.preferred || !r.watchable() {
			continue
		}
		names := []string{r.qualified(), kinds.Name(r.gvk.Group, r.plural)}
		if matchAny(sel.Patterns, names...) && !matchAny(sel.Exclude, names...) {
			matched = append(matched, r)
		}
	}
	sort.Slice(matched, func(i, j int) bool { return matched[i].qualified() < matched[j].qualified() })
	for _, r := range matched {
		add(r)
	}
	// Patterns may match nothing yet: kinds they pick may be installed
	// later, and saved objects of kinds they covered must still be deleted.
	return out, nil
}

// ResolveAvailable is Resolve for a running selection: names that do not
// resolve now (a named kind's definition deleted) are left out and
// reported, the rest is returned.
func (idx *Index) ResolveAvailable(sel Selection) ([]kinds.Kind, []error) {
	var missing []error
	var names []string
	for _, n := range sel.Names {
		if _, err := idx.lookup(n); err != nil {
			missing = append(missing, err)
			continue
		}
		names = append(names, n)
	}
	sel.Names = names
	ks, err := idx.Resolve(sel)
	if err != nil {
		missing = append(missing, err)
	}
	return ks, missing
}

// FailedGroups names the API groups discovery could not read.
func (idx *Index) FailedGroups() map[string]error { return idx.failedGroups }

// Served reports whether the cluster still serves k (its group, version and
// resource), so a watched kind whose version went away can be replaced.
func (idx *Index) Served(k kinds.Kind) bool {
	for _, r := range idx.resources {
		if r.gvk == k.GVK && r.plural == k.Plural {
			return true
		}
	}
	return false
}

func (idx *Index) metadataOnly(sel Selection, r resource) bool {
	return matchAny(sel.MetadataOnly, r.qualified(), kinds.Name(r.gvk.Group, r.plural), r.plural, r.singular)
}

func kindOf(r resource, metadataOnly bool) kinds.Kind {
	if k, ok := kinds.ByResource(kinds.Name(r.gvk.Group, r.plural)); ok && k.GVK == r.gvk {
		k.MetadataOnly = metadataOnly
		return k
	}
	return kinds.Discovered(r.gvk, r.plural, r.namespaced, metadataOnly)
}

// lookup resolves one name the way kubectl does: "resource.version.group",
// "resource.group" or "resource", where resource may be the plural, the
// singular, a short name or the kind; without a version the group's
// preferred one, without a group the core group first, then discovery's
// order.
func (idx *Index) lookup(name string) (resource, error) {
	var candidates []resource
	if parts := strings.SplitN(name, ".", 3); len(parts) == 3 {
		for _, r := range idx.resources {
			if r.gvk.Version == parts[1] && r.gvk.Group == parts[2] && r.names(parts[0]) {
				candidates = append(candidates, r)
			}
		}
	}
	if len(candidates) == 0 {
		res, group, _ := strings.Cut(name, ".")
		for _, r := range idx.resources {
			if (group == "" || r.gvk.Group == group) && r.names(res) && r.preferred {
				candidates = append(candidates, r)
			}
		}
	}
	if len(candidates) == 0 {
		if res, group, ok := strings.Cut(name, "."); ok {
			if err, failed := idx.failedGroups[group]; failed {
				return resource{}, fmt.Errorf("kind %q: the API group %s could not be discovered (%v): check its APIService, or drop it from --kinds", name, group, err)
			}
			_ = res
		}
		return resource{}, fmt.Errorf("unknown kind %q%s", name, idx.suggest(name))
	}
	sort.SliceStable(candidates, func(i, j int) bool {
		ci, cj := candidates[i], candidates[j]
		if (ci.gvk.Group == "") != (cj.gvk.Group == "") {
			return ci.gvk.Group == ""
		}
		return ci.order < cj.order
	})
	r := candidates[0]
	if !r.watchable() {
		return resource{}, fmt.Errorf("kind %q (%s) cannot be listed and watched (its verbs: %s): drop it from --kinds", name, r.qualified(), strings.Join(r.verbs, ","))
	}
	return r, nil
}

func (r resource) names(n string) bool {
	return n == r.plural || n == r.singular || n == strings.ToLower(r.gvk.Kind) || slices.Contains(r.shortNames, n)
}

// suggest names up to three served kinds closest to name.
func (idx *Index) suggest(name string) string {
	type scored struct {
		name string
		d    int
	}
	best := map[string]int{}
	for _, r := range idx.resources {
		if !r.watchable() {
			continue
		}
		q := r.qualified()
		for _, n := range []string{q, r.plural, r.singular} {
			if n == "" {
				continue
			}
			d := distance(name, n)
			if cur, ok := best[q]; !ok || d < cur {
				best[q] = d
			}
		}
	}
	var all []scored
	for n, d := range best {
		if d <= max(2, len(name)/3) {
			all = append(all, scored{n, d})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].d != all[j].d {
			return all[i].d < all[j].d
		}
		return all[i].name < all[j].name
	})
	if len(all) == 0 {
		return ": see kubectl api-resources for the kinds this cluster serves"
	}
	var names []string
	for i := 0; i < len(all) && i < 3; i++ {
		names = append(names, all[i].name)
	}
	return ": did you mean " + strings.Join(names, ", ") + "? (kubectl api-resources lists them all)"
}

// distance is the Levenshtein edit distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
