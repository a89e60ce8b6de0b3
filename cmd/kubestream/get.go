package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/config"
	"github.com/kubestream/kubestream/pkg/consumer"
	"github.com/kubestream/kubestream/pkg/consumer/table"
	"github.com/kubestream/kubestream/pkg/kinds"
	kafkasink "github.com/kubestream/kubestream/pkg/sink/kafka"
)

func init() {
	register("get", command{summary: "print the objects a consumer of the bus holds now, like kubectl get", run: runGet})
}

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("kubestream get", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "YAML file of settings: keys are flag names")
	var (
		namespace     = fs.StringP("namespace", "n", "default", "namespace of namespaced kinds")
		allNamespaces = fs.BoolP("all-namespaces", "A", false, "objects of every namespace, with a NAMESPACE column")
		clusterName   = fs.String("cluster", "", "only this cluster (Event.cluster, kubestream run's --cluster-name); default every cluster, with a CLUSTER column when there are several")
		selector      = fs.StringP("selector", "l", "", "label selector (app=web,tier!=db)")
		output        = fs.StringP("output", "o", "", "wide, json, yaml or name; default a table")
		busOpts       = addBusFlags(fs)
	)
	addLogFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: kubestream get <resource> [name...] [flags]\n\nReads the bus from its start to its current end with the consumer library\n(pkg/consumer) and prints the objects a consumer holds now, as kubectl get does:\nfor debugging consumers without access to the cluster. Resources: pods (po),\nnodes (no), deployments (deploy), configmaps (cm), or any resource on the bus\n(widgets.example.com).\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "kubestream get: %v\n", err)
		return 2
	}
	var problems []string
	if fs.NArg() == 0 {
		problems = append(problems, "name a resource to get: kubestream get pods (or nodes, deployments, configmaps)")
	}
	format, err := table.ParseFormat(*output)
	if err != nil {
		problems = append(problems, err.Error())
	}
	sel := labels.Everything()
	if *selector != "" {
		if sel, err = labels.Parse(*selector); err != nil {
			problems = append(problems, fmt.Sprintf("--selector %q: %v", *selector, err))
		}
	}
	b, busProblems := busOpts.resolve()
	problems = append(problems, busProblems...)
	if !b.kafka && b.stream == "" {
		problems = append(problems, "kubestream get reads history: it needs a JetStream stream (--nats-stream), core NATS keeps none")
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "kubestream get: %s\n", p)
		}
		return 2
	}
	resource, namespaced := resolveResource(fs.Arg(0))
	names := fs.Args()[1:]

	ctx = klog.NewContext(ctx, klog.Background())
	defer klog.Flush()
	store := consumer.NewStore(consumer.Options{})
	src, closeSrc, err := getSource(ctx, b, resource)
	if err != nil {
		fmt.Fprintf(stderr, "kubestream get: %v\n", err)
		return 1
	}
	defer closeSrc()
	if err := consumer.Run(ctx, src, store); err != nil {
		fmt.Fprintf(stderr, "kubestream get: %v\n", err)
		return 1
	}
	if ctx.Err() != nil {
		return 1
	}

	clusters := store.Clusters()
	if *clusterName != "" {
		if !contains(clusters, *clusterName) {
			fmt.Fprintf(stderr, "kubestream get: no events of cluster %q on the bus; clusters seen: %s\n", *clusterName, orNoneList(clusters))
			return 1
		}
		clusters = []string{*clusterName}
	}
	for _, c := range clusters {
		if !store.Synced(c) {
			fmt.Fprintf(stderr, "kubestream get: warning: cluster %s: no complete replay round on the bus yet (it started before the bus's oldest event), objects that did not change since may be missing\n", c)
		}
	}
	objs := store.List(*clusterName, resource, sel)
	// Cluster-scoped resources have no namespace to filter on; for a
	// resource this build does not know, the objects say which it is.
	if !namespaced {
		for _, o := range objs {
			if o.Namespace != "" {
				namespaced = true
				break
			}
		}
	}
	if namespaced && !*allNamespaces {
		objs = filter(objs, func(o *consumer.Object) bool { return o.Namespace == *namespace })
	}
	if len(names) > 0 {
		want := map[string]bool{}
		for _, n := range names {
			want[n] = true
		}
		objs = filter(objs, func(o *consumer.Object) bool { return want[o.Name] })
		for _, n := range names {
			if len(filter(objs, func(o *consumer.Object) bool { return o.Name == n })) == 0 {
				fmt.Fprintf(stderr, "kubestream get: %s %q not found on the bus\n", resource, n)
			}
		}
	}
	if len(objs) == 0 && len(names) == 0 && format != table.JSON && format != table.YAML {
		switch {
		case namespaced && !*allNamespaces:
			fmt.Fprintf(stderr, "No resources found in %s namespace.\n", *namespace)
		default:
			fmt.Fprintln(stderr, "No resources found")
		}
		return 0
	}
	opts := table.Options{Format: format, WithNamespace: namespaced && *allNamespaces, WithCluster: *clusterName == "" && len(clusters) > 1, Now: time.Now(), Single: len(names) == 1}
	if err := table.Print(stdout, objs, opts); err != nil {
		fmt.Fprintf(stderr, "kubestream get: %v\n", err)
		return 1
	}
	if len(names) > 0 && len(objs) < len(names) {
		return 1
	}
	return 0
}

// resolveResource maps what a user types (pod, po, Pod, deploy) to the
// resource name on the bus; unknown names are taken as they are.
func resolveResource(arg string) (resource string, namespaced bool) {
	short := map[string]string{"po": "pods", "no": "nodes", "deploy": "deployments", "cm": "configmaps", "deployments.apps": "deployments"}
	name := strings.ToLower(arg)
	if r, ok := short[name]; ok {
		name = r
	}
	if k, err := kinds.Parse(name); err == nil && len(k) == 1 {
		return k[0].Resource, k[0].Namespaced
	}
	return name, false
}

// getSource opens the reader of the bus b from its start to its current end.
func getSource(ctx context.Context, b bus, resource string) (consumer.Source, func(), error) {
	if b.kafka {
		dialer, err := kafkasink.NewDialer(10*time.Second, b.kafkaTLS, b.kafkaSASL)
		if err != nil {
			return nil, nil, err
		}
		k := &consumer.Kafka{Brokers: b.brokers, TopicPrefix: b.topicPrefix, FromStart: true, StopAtEnd: true, Dialer: dialer}
		if b.topic != "" {
			k.Topics = []string{b.topic}
			return k, func() {}, nil
		}
		// Only the resource's topic: <prefix>.<resource> (or
		// <prefix>.<resource>.<group>), which also carries its markers.
		all, err := k.Discover(ctx)
		if err != nil {
			return nil, nil, err
		}
		res, group, _ := strings.Cut(resource, ".")
		for _, t := range all {
			rest := strings.TrimPrefix(t, b.topicPrefix+".")
			if rest == res || group != "" && rest == res+"."+group || group == "" && strings.HasPrefix(rest, res+".") {
				k.Topics = append(k.Topics, t)
			}
		}
		if len(k.Topics) == 0 {
			return nil, nil, fmt.Errorf("no topic of %s on the brokers; event topics: %s", resource, strings.Join(all, ", "))
		}
		return k, func() {}, nil
	}
	if len(b.conn.URLs) == 0 {
		return nil, nil, errors.New("no NATS server: pass --nats-url, or start kubestream run (its embedded server) first")
	}
	nc, err := b.conn.Connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	return &consumer.JetStream{Conn: nc, Stream: b.stream, FromStart: true, StopAtEnd: true}, nc.Close, nil
}

func filter(objs []*consumer.Object, keep func(*consumer.Object) bool) []*consumer.Object {
	var out []*consumer.Object
	for _, o := range objs {
		if keep(o) {
			out = append(out, o)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func orNoneList(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}
