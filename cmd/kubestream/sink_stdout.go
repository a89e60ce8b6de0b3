package main

import (
	"context"
	"os"

	"github.com/spf13/pflag"

	"github.com/kubestream/kubestream/pkg/app"
	"github.com/kubestream/kubestream/pkg/sink/stdout"
)

func init() {
	registerSink("stdout", sinkFactory{
		summary:  "JSON lines on standard output",
		addFlags: func(*pflag.FlagSet) {},
		open: func(context.Context, []string) (app.Sink, error) {
			return stdout.New(os.Stdout), nil
		},
	})
}
