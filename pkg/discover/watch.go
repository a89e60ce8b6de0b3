package discover

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Definitions is the resource of custom resource definitions: watching it
// is how a pattern learns of kinds created or removed while running.
var Definitions = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// WatchDefinitions calls changed after custom resource definitions are
// created, changed or deleted, and every period as well (aggregated APIs
// come and go without a definition). A definition's kind is served by
// discovery a moment after the definition appears (once established), so
// each change is followed by calls after settle and after 5*settle; calls
// are coalesced and never overlap. It returns once the definitions' initial
// list is in (whose adds count as changes too: a definition created while
// the watch started is not missed), and keeps watching until ctx ends.
func WatchDefinitions(ctx context.Context, cfg *rest.Config, period, settle time.Duration, changed func(context.Context)) error {
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("build metadata client: %w", err)
	}
	inf := metadatainformer.NewFilteredMetadataInformer(mc, Definitions, "", 0, cache.Indexers{}, nil).Informer()
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	})
	if err != nil {
		return fmt.Errorf("watch custom resource definitions: %w", err)
	}
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return fmt.Errorf("list custom resource definitions: %w", context.Cause(ctx))
	}
	go func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		var due []time.Time
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
				now := time.Now()
				due = append(due[:0], now.Add(settle), now.Add(5*settle))
			case <-tick.C:
				changed(ctx)
				continue
			case <-timer.C:
			}
			now := time.Now()
			fire := false
			for len(due) > 0 && !due[0].After(now) {
				due, fire = due[1:], true
			}
			if fire {
				changed(ctx)
			}
			if len(due) > 0 {
				timer.Reset(time.Until(due[0]))
			} else {
				timer.Reset(time.Hour)
			}
		}
	}()
	return nil
}
