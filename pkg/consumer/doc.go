// Package consumer materializes a kubestream event stream into the objects
// it describes, the way a client-go informer materializes a watch: a Store
// of the current objects per cluster and resource (Get, List, by label),
// handlers OnAdd, OnUpdate and OnDelete with the old and new state, and
// HasSynced once a complete round has been applied.
//
// It is the reference implementation of the consumer contract
// (docs/contract.md): every event goes through pkg/contract's rule, kept
// per cluster and per ordered stream (a Kafka partition, a JetStream
// stream), after dropping redeliveries by event id. kubestream's own tests
// judge the stream with it.
//
// A minimal consumer:
//
//	store := consumer.NewStore(consumer.Options{})
//	store.AddHandler(consumer.HandlerFuncs{
//		AddFunc: func(o *consumer.Object) { fmt.Println("added", o.Cluster, o.Key()) },
//	})
//	src := &consumer.Kafka{Brokers: []string{"kafka:9092"}, TopicPrefix: "kubestream", FromStart: true}
//	err := consumer.Run(ctx, src, store)
//
// Readers deliver events in order per stream and advance their position
// (Kafka offset commit, JetStream ack) only after Store.Apply and the
// handlers returned, so an event is never acknowledged before it was
// handled. The Store lives in memory: a process that restarts with
// committed offsets (a consumer group, a durable JetStream consumer)
// resumes where it stopped with an empty store, which is right for
// handlers that write elsewhere; HasSynced then waits for the next
// complete replay round. An in-memory cache reads from the start
// (FromStart without a group or durable).
package consumer
