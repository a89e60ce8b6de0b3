// Package discover turns the user's kind selection (--kinds,
// --exclude-kinds, --kinds-metadata-only) into the kinds to watch, with the
// cluster's discovery: names as kubectl accepts them ("pods", "deploy",
// "deployments.apps", "rollouts.v1alpha1.argoproj.io") and patterns ("*",
// "*.cert-manager.io"). It also watches custom resource definitions so a
// pattern picks up kinds created while running.
package discover

import (
	"fmt"
	"path"
	"strings"
)

// DefaultExclude are the kinds patterns leave out unless named: high-churn
// kinds that are noise on a change stream (events, leader-election leases,
// endpoint bookkeeping) and kinds nobody streams.
const DefaultExclude = "events,events.events.k8s.io,leases.coordination.k8s.io,endpoints,endpointslices.discovery.k8s.io,componentstatuses"

// DefaultMetadataOnly are the kinds watched metadata-only unless told
// otherwise: secrets' values never leave the cluster by default.
const DefaultMetadataOnly = "secrets"

// Selection is a parsed kind selection.
type Selection struct {
	// Names are kinds named explicitly, as given (lower-cased).
	Names []string
	// Patterns hold '*' (path.Match syntax) and match qualified resource
	// names: "pods", "deployments.apps", "certificates.cert-manager.io".
	Patterns []string
	// Exclude are names or patterns that patterns do not pick.
	Exclude []string
	// MetadataOnly are names or patterns watched as metadata only.
	MetadataOnly []string
}

// Parse reads the comma-separated lists. It needs no cluster: every syntax
// problem is reported before anything is contacted.
func Parse(kindList, excludeList, metadataOnlyList string) (Selection, error) {
	var sel Selection
	var problems []string
	for _, item := range split(kindList) {
		if err := checkItem(item); err != nil {
			problems = append(problems, "--kinds: "+err.Error())
			continue
		}
		if strings.Contains(item, "*") {
			sel.Patterns = append(sel.Patterns, item)
		} else {
			sel.Names = append(sel.Names, item)
		}
	}
	if len(sel.Names)+len(sel.Patterns) == 0 && len(problems) == 0 {
		problems = append(problems, "--kinds: no kinds given: name kinds (pods,deployments.apps) or patterns ('*', '*.example.com')")
	}
	for _, item := range split(excludeList) {
		if err := checkItem(item); err != nil {
			problems = append(problems, "--exclude-kinds: "+err.Error())
			continue
		}
		sel.Exclude = append(sel.Exclude, item)
	}
	for _, item := range split(metadataOnlyList) {
		if err := checkItem(item); err != nil {
			problems = append(problems, "--kinds-metadata-only: "+err.Error())
			continue
		}
		sel.MetadataOnly = append(sel.MetadataOnly, item)
	}
	if len(problems) > 0 {
		return Selection{}, fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	return sel, nil
}

func checkItem(item string) error {
	for _, r := range item {
		if !(r == '.' || r == '-' || r == '*' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z') {
			return fmt.Errorf("%q is not a kind name or pattern: use names such as pods, deployments.apps, certificates.cert-manager.io, or patterns such as '*' and '*.example.com'", item)
		}
	}
	if _, err := path.Match(item, ""); err != nil {
		return fmt.Errorf("%q is not a valid pattern: %w", item, err)
	}
	return nil
}

func split(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.ToLower(strings.TrimSpace(s)); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// HasPatterns reports whether kinds may come and go while running.
func (s Selection) HasPatterns() bool { return len(s.Patterns) > 0 }

// Covers reports whether a pattern of the selection picks a kind named
// resource (kubestream's name or the qualified one), excluded kinds aside:
// saved objects of a covered kind the cluster no longer serves are deleted.
func (s Selection) Covers(resource string) bool {
	return matchAny(s.Patterns, resource) && !matchAny(s.Exclude, resource)
}

func matchAny(patterns []string, names ...string) bool {
	for _, p := range patterns {
		for _, n := range names {
			if ok, _ := path.Match(p, n); ok {
				return true
			}
		}
	}
	return false
}
