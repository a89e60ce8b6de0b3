package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kubestream/kubestream/pkg/app"
	"github.com/kubestream/kubestream/pkg/config"
	"github.com/kubestream/kubestream/pkg/discover"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/rbac"
)

func init() {
	register("rbac", command{summary: "print the least-privilege ClusterRole for a --kinds selection", run: runRBAC})
}

func runRBAC(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("kubestream rbac", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "YAML file of settings (the same file as kubestream run's)")
	var (
		kubeconfig   = fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)")
		kubeContext  = fs.String("context", "", "kubeconfig context (default: the current context)")
		kindList     = fs.String("kinds", strings.Join(kinds.Names(kinds.All()), ","), "the --kinds of kubestream run: names and patterns, resolved with the cluster's discovery")
		excludeKinds = fs.String("exclude-kinds", discover.DefaultExclude, "the --exclude-kinds of kubestream run")
		metadataOnly = fs.String("kinds-metadata-only", discover.DefaultMetadataOnly, "the --kinds-metadata-only of kubestream run")
		name         = fs.String("name", "kubestream", "name of the ClusterRole")
	)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: kubestream rbac [flags] | kubectl apply -f -\n\nPrints the ClusterRole kubestream run needs for its --kinds: get, list and watch on\nexactly the resources they resolve to on this cluster, and on custom resource\ndefinitions when patterns are used (to pick up kinds created later; a kind created\nlater needs this role printed and applied again). Bind it to kubestream's\nServiceAccount (deploy/base/clusterrolebinding.yaml).\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "kubestream rbac: %v (see 'kubestream rbac --help')\n", err)
		return 2
	}
	sel, err := discover.Parse(*kindList, *excludeKinds, *metadataOnly)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "kubestream rbac: %s\n", line)
		}
		return 2
	}
	cfg, _, err := app.RestConfig(*kubeconfig, *kubeContext)
	if err != nil {
		fmt.Fprintf(stderr, "kubestream rbac: %v\n", err)
		return 2
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "kubestream rbac: build Kubernetes client: %v\n", err)
		return 2
	}
	idx, err := discover.Discover(client.Discovery())
	if err != nil {
		fmt.Fprintf(stderr, "kubestream rbac: %v (check --kubeconfig and --context, and that the cluster is up)\n", err)
		return 1
	}
	ks, err := idx.Resolve(sel)
	if err != nil {
		fmt.Fprintf(stderr, "kubestream rbac: --kinds: %v\n", err)
		return 2
	}
	out, err := yaml.Marshal(rbac.ClusterRole(*name, ks, sel.HasPatterns()))
	if err != nil {
		fmt.Fprintf(stderr, "kubestream rbac: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "# kubestream rbac --kinds %s\n# resolved to: %s\n", *kindList, strings.Join(kinds.Names(ks), ", "))
	_, _ = stdout.Write(out)
	return 0
}
