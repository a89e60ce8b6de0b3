package main

import (
	"context"
	"io"

	"github.com/kubestream/kubestream/pkg/app"
	"github.com/kubestream/kubestream/pkg/sink/stdout"
)

// openStdout writes JSON lines to w.
func openStdout(w io.Writer) app.SinkOpener {
	return func(context.Context, []string) (app.Sink, error) { return stdout.New(w), nil }
}
