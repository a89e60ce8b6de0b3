package main

import (
	"context"
	"errors"

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
			o := opts
			o.Streams = streams
			s, err := kafka.Open(ctx, o)
			if errors.Is(err, kafka.ErrMissingTopics) {
				// Topics to create, or a flag to add: exit code 2.
				return nil, app.BadInput(err)
			}
			if err != nil {
				return nil, err
			}
			return s, nil
		},
	})
}
