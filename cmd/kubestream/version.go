package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/kubestream/kubestream/pkg/event"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func init() {
	register("version", command{summary: "print the version", run: runVersion})
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) int {
	commit := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	fmt.Fprintf(stdout, "kubestream %s (commit %s, %s, wire schema v%d)\n", version, commit, runtime.Version(), event.SchemaVersion)
	return 0
}
