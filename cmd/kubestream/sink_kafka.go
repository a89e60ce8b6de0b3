package main

import (
	"context"

	"github.com/kubestream/kubestream/pkg/app"
	"github.com/kubestream/kubestream/pkg/sink/kafka"
)

func init() {
	opts := kafka.NewOptions()
	registerSink("kafka", sinkFactory{
		summary:  "Apache Kafka: one topic per kind, keyed by object, acks=all",
		addFlags: opts.AddFlags,
		open: func(ctx context.Context, streams []string) (app.Sink, error) {
			if err := opts.Validate(); err != nil {
				return nil, app.BadInput(err)
			}
			return kafka.Open(ctx, opts)
		},
	})
}
