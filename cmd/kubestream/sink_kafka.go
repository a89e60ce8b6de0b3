package main

import (
	"context"
	"errors"

	"github.com/kubestream/kubestream/pkg/app"
	"github.com/kubestream/kubestream/pkg/sink/kafka"
)

// openKafka connects the Kafka sink; the options are validated already.
func openKafka(opts kafka.Options) app.SinkOpener {
	return func(ctx context.Context, streams []string) (app.Sink, error) {
		opts.Streams = streams
		s, err := kafka.Open(ctx, opts)
		if errors.Is(err, kafka.ErrMissingTopics) {
			// Topics to create, or a flag to add: exit code 2.
			return nil, app.BadInput(err)
		}
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}
