package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/app"
	"github.com/kubestream/kubestream/pkg/config"
)

func init() {
	register("run", command{summary: "stream object changes to a sink", run: runRun})
}

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("kubestream run", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := newRunOptions()
	opts.AddFlags(fs)
	addLogFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: kubestream run [flags]\n\nStreams changes of Kubernetes objects to a sink. Every flag can also be set as\nKUBESTREAM_<FLAG> in the environment or as a key of the --config file.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "kubestream run: %v (see 'kubestream run --help')\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kubestream run: unexpected argument %q (flags start with --)\n", fs.Arg(0))
		return 2
	}
	// Every problem at once, before the cluster or a broker is contacted.
	if errs := opts.Validate(); len(errs) > 0 {
		for _, err := range errs {
			fmt.Fprintf(stderr, "kubestream run: %v\n", err)
		}
		return 2
	}
	cfg, openSink, err := opts.Complete(stdout)
	if err != nil {
		return fail(stderr, app.BadInput(err))
	}

	logger := klog.Background()
	ctx = klog.NewContext(ctx, logger)
	err = app.Run(ctx, cfg, openSink)
	klog.Flush()
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "kubestream run: %v\n", err)
	if app.IsBadInput(err) {
		return 2
	}
	return 1
}

// addLogFlags exposes klog's verbosity flags, not its file-logging ones:
// logs go to stderr, where container runtimes collect them.
func addLogFlags(fs *pflag.FlagSet) {
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	for _, name := range []string{"v", "vmodule"} {
		fs.AddGoFlag(klogFlags.Lookup(name))
	}
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func defaultInstance() string {
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "kubestream"
}
