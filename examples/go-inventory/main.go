// Command go-inventory keeps a live pod inventory of every cluster on the
// bus with kubestream's consumer library: pods per phase and per image,
// printed once the stream is synced and again after every change.
//
//	go run ./examples/go-inventory --kafka-brokers localhost:9092
//	go run ./examples/go-inventory --nats-url nats://127.0.0.1:4222
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/kubestream/kubestream/pkg/consumer"
)

func main() {
	brokers := flag.String("kafka-brokers", "", "Kafka brokers, comma-separated (reads the kubestream.* topics)")
	natsURL := flag.String("nats-url", "", "NATS server with the KUBESTREAM JetStream stream")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *brokers, *natsURL); err != nil {
		fmt.Fprintln(os.Stderr, "go-inventory:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, brokers, natsURL string) error {
	var src consumer.Source
	switch {
	case brokers != "":
		src = &consumer.Kafka{Brokers: strings.Split(brokers, ","), FromStart: true, WaitForTopics: true}
	case natsURL != "":
		nc, err := nats.Connect(natsURL)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", natsURL, err)
		}
		defer nc.Close()
		src = &consumer.JetStream{Conn: nc, FromStart: true}
	default:
		return fmt.Errorf("say where to read: --kafka-brokers host:9092 or --nats-url nats://host:4222")
	}

	store := consumer.NewStore(consumer.Options{})
	// The inventory logic: on any pod change of a synced cluster, print it.
	report := func(o *consumer.Object) {
		if o.Resource == "pods" && store.Synced(o.Cluster) {
			fmt.Println(inventory(store, o.Cluster))
		}
	}
	store.AddHandler(consumer.HandlerFuncs{
		AddFunc:    func(o *consumer.Object, _ bool) { report(o) },
		UpdateFunc: func(_, o *consumer.Object) { report(o) },
		DeleteFunc: report,
	})
	go func() {
		if store.WaitForSync(ctx) == nil {
			for _, c := range store.Clusters() {
				fmt.Println(inventory(store, c))
			}
		}
	}()
	return consumer.Run(ctx, src, store)
}

// inventory is one line: the cluster's pods, by phase and by image.
func inventory(store *consumer.Store, cluster string) string {
	phases, images := map[string]int{}, map[string]int{}
	pods := store.List(cluster, "pods", nil)
	for _, o := range pods {
		pod, err := o.Pod()
		if err != nil {
			phases["Unknown"]++ // no state: truncated to fit the broker
			continue
		}
		phases[string(pod.Status.Phase)]++
		for _, c := range pod.Spec.Containers {
			images[c.Image]++
		}
	}
	return fmt.Sprintf("cluster=%s pods=%d phases=%s images=%s", cluster, len(pods), counts(phases), counts(images))
}

// counts prints a map as sorted key:count pairs.
func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, ",")
}
