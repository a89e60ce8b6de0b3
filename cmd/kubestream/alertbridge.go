package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/alertbridge"
	"github.com/kubestream/kubestream/pkg/config"
	"github.com/kubestream/kubestream/pkg/server"
)

func init() {
	register("alert-bridge", command{summary: "post image-storage alerts from NATS or Kafka to Alertmanager", run: runAlertBridge})
}

func runAlertBridge(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := pflag.NewFlagSet("kubestream alert-bridge", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "YAML file of settings: keys are flag names (alertmanager-url: [http://am:9093])")
	cfg := alertbridge.DefaultConfig()
	cfg.AddFlags(fs)
	addLogFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: kubestream alert-bridge [flags]\n\nReads kubestream's image-storage events from NATS JetStream or Kafka and posts\nfiring and resolved alerts to Alertmanager (POST /api/v2/alerts). A message is\nacknowledged only after Alertmanager accepted its alerts. Every flag can also be\nset as KUBESTREAM_<FLAG> in the environment or as a key of the --config file.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "kubestream alert-bridge: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kubestream alert-bridge: unexpected argument %q (flags start with --)\n", fs.Arg(0))
		return 2
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		for _, err := range errs {
			fmt.Fprintf(stderr, "kubestream alert-bridge: %v\n", err)
		}
		return 2
	}
	client, err := cfg.NewClient()
	if err != nil {
		fmt.Fprintf(stderr, "kubestream alert-bridge: %v\n", err)
		return 2
	}

	logger := klog.Background()
	ctx = klog.NewContext(ctx, logger)
	// Listening first: a taken address fails before any connection.
	reg := prometheus.NewRegistry()
	var opened atomic.Bool
	var srv *server.Server
	if cfg.ListenAddress != "" {
		srv, err = server.Listen(server.Options{Address: cfg.ListenAddress, Registry: reg, Ready: func() error {
			if !opened.Load() {
				return errors.New("connecting to the source")
			}
			return nil
		}})
		if err != nil {
			fmt.Fprintf(stderr, "kubestream alert-bridge: %v\n", err)
			return 2
		}
		serveCtx, stopServe := context.WithCancel(ctx)
		serveDone := make(chan struct{})
		go func() {
			defer close(serveDone)
			if err := srv.Serve(serveCtx); err != nil {
				logger.Error(err, "Serving metrics and health failed")
			}
		}()
		defer func() { stopServe(); <-serveDone }()
	}
	src, closeSource, err := cfg.OpenSource(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "kubestream alert-bridge: %v\n", err)
		return 1
	}
	defer closeSource()
	bridge := alertbridge.New(client, cfg.BridgeOptions())
	reg.MustRegister(bridge.Metrics())
	opened.Store(true)
	resendDone := make(chan struct{})
	go func() {
		bridge.RunResend(ctx)
		close(resendDone)
	}()
	logger.Info("Alert bridge started", "source", cfg.Source, "alertmanagers", cfg.AlertmanagerURLs, "resendInterval", cfg.ResendInterval.String(), "alertTTL", cfg.AlertTTL.String())
	err = src.Run(ctx, bridge.Handle)
	<-resendDone
	st := bridge.Stats()
	logger.Info("Alert bridge stopped", "events", st.Events, "posts", st.Posts, "retries", st.Retries, "rejected", st.Rejected, "skipped", st.Skipped, "firing", bridge.Firing())
	klog.Flush()
	if err != nil {
		fmt.Fprintf(stderr, "kubestream alert-bridge: %v\n", err)
		return 1
	}
	return 0
}
