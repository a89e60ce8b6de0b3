package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/natsembed"
	"github.com/kubestream/kubestream/pkg/resume"
)

// afterKill is what the bus holds once kubestream was SIGKILLed.
type afterKill struct {
	// SavedAtLive is how many of the live updates made just before the
	// kill have their resourceVersion in the saved state (the rest are
	// re-sent by the next start).
	SavedAtLive int `json:"savedAtLiveUpdate"`
	LiveUpdates int `json:"liveUpdates"`
	// StreamLastSeq is the JetStream stream's last sequence after the
	// kill, ReadSeq the last one the reader had read before it: a stream
	// that ends before what was read lost acknowledged messages.
	StreamLastSeq uint64 `json:"streamLastSeq,omitempty"`
	ReadSeq       uint64 `json:"readSeq,omitempty"`
}

// inspectAfterKill reads the saved positions of namespace's pods (name ->
// resourceVersion) and, for NATS, the stream's end, while no kubestream runs.
// live maps the pods updated just before the kill to their new
// resourceVersion.
func (b *bus) inspectAfterKill(ctx context.Context, dir, namespace string, live map[string]string) (afterKill, error) {
	ak := afterKill{LiveUpdates: len(live)}
	var saved map[string]string
	var err error
	switch b.sink {
	case "kafka":
		saved, err = kafkaSaved(ctx, b.brokers, "kubestream.state", namespace)
	case "nats":
		b.nats.mu.Lock()
		ak.ReadSeq = b.nats.lastSeq
		b.nats.mu.Unlock()
		saved, ak.StreamLastSeq, err = natsSaved(ctx, filepath.Join(dir, "nats"), namespace)
	}
	if err != nil {
		return ak, err
	}
	for name, rv := range live {
		if saved[name] == rv {
			ak.SavedAtLive++
		}
	}
	return ak, nil
}

// savedKey splits a store key "pods/<namespace>/<name>/<uid>".
func savedName(storeKey, namespace string) (string, bool) {
	objectKey, _, ok := resume.SplitStoreKey(storeKey)
	if !ok {
		return "", false
	}
	name, ok := strings.CutPrefix(objectKey, "pods/"+namespace+"/")
	return name, ok
}

// kafkaSaved reads the compacted state topic to its end: pod name ->
// resourceVersion of the cluster "default".
func kafkaSaved(ctx context.Context, brokers []string, topic, namespace string) (map[string]string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	out := map[string]string{}
	idle := time.Now()
	for time.Since(idle) < 2*time.Second {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		fs.EachRecord(func(r *kgo.Record) {
			idle = time.Now()
			k, ok := strings.CutPrefix(string(r.Key), "default/")
			if !ok {
				return
			}
			name, ok := savedName(k, namespace)
			if !ok {
				return
			}
			if r.Value == nil {
				delete(out, name)
				return
			}
			if e, err := resume.Decode(r.Value); err == nil {
				out[name] = e.ResourceVersion
			}
		})
	}
	return out, nil
}

// natsSaved starts the embedded server on kubestream's data directory and
// reads the state bucket and the stream's last sequence.
func natsSaved(ctx context.Context, dir, namespace string) (map[string]string, uint64, error) {
	logger := klog.Background()
	srv, err := natsembed.Start(natsembed.Options{Dir: dir, Port: server.RANDOM_PORT, Logger: &logger})
	if err != nil {
		return nil, 0, err
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		return nil, 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, 0, err
	}
	st, err := js.Stream(ctx, "KUBESTREAM")
	if err != nil {
		return nil, 0, fmt.Errorf("stream KUBESTREAM: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, 0, err
	}
	kv, err := js.KeyValue(ctx, "KUBESTREAM_STATE")
	if err != nil {
		return nil, 0, fmt.Errorf("bucket KUBESTREAM_STATE: %w", err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, 0, err
	}
	defer w.Stop()
	out := map[string]string{}
	prefix := "default.pods." + namespace + "."
	for e := range w.Updates() {
		if e == nil {
			break // the initial values are done
		}
		rest, ok := strings.CutPrefix(e.Key(), prefix)
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(rest, ".")
		if v, err := resume.Decode(e.Value()); err == nil {
			out[name] = v.ResourceVersion
		}
	}
	return out, info.State.LastSeq, nil
}
