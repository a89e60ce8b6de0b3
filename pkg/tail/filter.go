package tail

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/event"
	"github.com/kubestream/kubestream/pkg/kinds"
)

// Filter selects events. Empty sets match everything.
//
// Replay markers have no kind or namespace: they pass the kind filter when
// their round covers one of the wanted kinds, and always pass the namespace
// filter, so a filtered view still shows where rounds begin and end. --op
// filters them like any event. Heartbeats are of their kind, in no
// namespace: they pass the namespace filter.
type Filter struct {
	Kinds      map[string]bool // resource names and "imagestorage"
	Namespaces map[string]bool
	Ops        map[kubestreamv1.Operation]bool
}

// ParseFilter reads the comma-separated --kind, --namespace and --op lists.
func ParseFilter(kindList, namespaceList, opList string) (Filter, error) {
	f := Filter{Kinds: map[string]bool{}, Namespaces: map[string]bool{}, Ops: map[kubestreamv1.Operation]bool{}}
	for _, k := range split(kindList) {
		switch strings.ToLower(k) {
		case kinds.ImageStorage, "image-storage", "imagestorages":
			f.Kinds[kinds.ImageStorage] = true
			continue
		}
		// The typed kinds by any of their names; any other kind by its
		// resource name as events carry it (services,
		// certificates.cert-manager.io).
		if ks, err := kinds.Parse(k); err == nil {
			f.Kinds[ks[0].Resource] = true
			continue
		}
		if strings.ContainsAny(k, " /*") {
			return Filter{}, fmt.Errorf("--kind %q is not a resource name: use names such as pods, services or certificates.cert-manager.io (or imagestorage)", k)
		}
		f.Kinds[strings.ToLower(k)] = true
	}
	for _, ns := range split(namespaceList) {
		f.Namespaces[ns] = true
	}
	for _, o := range split(opList) {
		ops, ok := opNames[strings.ToLower(o)]
		if !ok {
			return Filter{}, fmt.Errorf("--op %q is unknown: use created, updated, deleted, snapshot, replay_begin, replay_end, replay or heartbeat", o)
		}
		for _, op := range ops {
			f.Ops[op] = true
		}
	}
	return f, nil
}

var opNames = map[string][]kubestreamv1.Operation{
	"created": {kubestreamv1.Operation_OPERATION_CREATED}, "create": {kubestreamv1.Operation_OPERATION_CREATED}, "c": {kubestreamv1.Operation_OPERATION_CREATED},
	"updated": {kubestreamv1.Operation_OPERATION_UPDATED}, "update": {kubestreamv1.Operation_OPERATION_UPDATED}, "u": {kubestreamv1.Operation_OPERATION_UPDATED},
	"deleted": {kubestreamv1.Operation_OPERATION_DELETED}, "delete": {kubestreamv1.Operation_OPERATION_DELETED}, "d": {kubestreamv1.Operation_OPERATION_DELETED},
	"snapshot": {kubestreamv1.Operation_OPERATION_SNAPSHOT}, "r": {kubestreamv1.Operation_OPERATION_SNAPSHOT},
	"replay_begin": {kubestreamv1.Operation_OPERATION_REPLAY_BEGIN},
	"replay_end":   {kubestreamv1.Operation_OPERATION_REPLAY_END},
	"replay":       {kubestreamv1.Operation_OPERATION_REPLAY_BEGIN, kubestreamv1.Operation_OPERATION_REPLAY_END},
	"heartbeat":    {kubestreamv1.Operation_OPERATION_HEARTBEAT},
}

func split(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Match reports whether ev passes the filter.
func (f Filter) Match(ev *kubestreamv1.Event) bool {
	if len(f.Ops) > 0 && !f.Ops[ev.GetOperation()] {
		return false
	}
	if r := ev.GetReplay(); r != nil {
		// Image-storage snapshots are derived from nodes: a round covering
		// nodes covers them too.
		return len(f.Kinds) == 0 || slices.ContainsFunc(r.GetKinds(), func(k string) bool {
			return f.Kinds[k] || k == kinds.Nodes.Resource && f.Kinds[kinds.ImageStorage]
		})
	}
	if len(f.Kinds) > 0 && !f.Kinds[event.Resource(ev)] {
		return false
	}
	if ev.GetHeartbeat() != nil {
		return true
	}
	return len(f.Namespaces) == 0 || f.Namespaces[ev.GetObject().GetNamespace()]
}
