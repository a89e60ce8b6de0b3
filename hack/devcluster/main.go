// Command devcluster runs a local etcd and kube-apiserver for first runs and
// demos, writes an admin kubeconfig, and keeps them running until interrupted.
//
//	go run ./hack/devcluster --dir ~/.cache/kubestream/devcluster
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/kubestream/kubestream/internal/controlplane"
)

func main() {
	home, _ := os.UserCacheDir()
	dir := flag.String("dir", filepath.Join(home, "kubestream", "devcluster"), "directory for data, logs and the kubeconfig")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A fresh data directory each time: the token and certificates are new.
	_ = os.RemoveAll(*dir)
	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: *dir})
	if err != nil {
		fmt.Fprintf(os.Stderr, "devcluster: %v\n", err)
		os.Exit(1)
	}
	defer cp.Stop()
	fmt.Fprintf(os.Stderr, "devcluster: kube-apiserver ready at %s\ndevcluster: kubeconfig %s\n", cp.URL, cp.Kubeconfig)
	<-ctx.Done()
}
