package nats_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubestream/kubestream/pkg/event"
	natssink "github.com/kubestream/kubestream/pkg/sink/nats"
	"github.com/kubestream/kubestream/pkg/sink/nats/natstest"
)

func TestJetStreamPublishesAckedDeduplicatedEvents(t *testing.T) {
	for _, p := range peers(t) {
		t.Run(p.name, func(t *testing.T) {
			ctx := ctxFor(t, 60*time.Second)
			nc := connect(t, p.url)
			sink, err := natssink.New(ctx, nc, natssink.Options{
				SubjectPrefix: "k8s",
				Stream:        natssink.StreamOptions{Name: "K8S", Create: true, Storage: "file", Replicas: 1, MaxAge: time.Hour, DuplicateWindow: time.Minute},
			})
			if err != nil {
				t.Fatal(err)
			}
			if !sink.JetStream() {
				t.Fatal("sink with a stream name does not use JetStream")
			}
			events := podEvents(t, 50, 2)
			noErrors(t, sink.Publish(ctx, events))
			// A retry or replay of the same events: the server drops them.
			noErrors(t, sink.Publish(ctx, events[:25]))
			noErrors(t, sink.Publish(ctx, events))

			msgs := readStream(t, nc, "K8S")
			if len(msgs) != len(events) {
				t.Fatalf("stream holds %d messages after publishing %d events twice, want %d", len(msgs), len(events), len(events))
			}
			for i, m := range msgs {
				want := events[i]
				got := decode(t, m.Data())
				if got.GetId() != want.GetId() {
					t.Fatalf("message %d is event %s, want %s (order)", i, got.GetId(), want.GetId())
				}
				h := m.Headers()
				for name, v := range map[string]string{
					event.HeaderID: want.GetId(), nats.MsgIdHdr: want.GetId(), event.HeaderOp: "updated",
					event.HeaderKind: "pods", event.HeaderNamespace: "payments", event.HeaderCluster: "test",
					event.HeaderSchema: "1", event.HeaderContentType: event.ContentTypeProtobuf,
				} {
					if h.Get(name) != v {
						t.Errorf("message %d header %s = %q, want %q", i, name, h.Get(name), v)
					}
				}
				parsed, err := natssink.ParseSubject("k8s", m.Subject())
				if err != nil || parsed.Kind != "pods" || parsed.Namespace != "payments" || parsed.Name != want.GetObject().GetName() {
					t.Errorf("subject %q parses to %+v, %v; want pods/payments/%s", m.Subject(), parsed, err, want.GetObject().GetName())
				}
			}
			if err := sink.Close(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCoreNATSPublishesToWildcardSubscribers(t *testing.T) {
	for _, p := range peers(t) {
		t.Run(p.name, func(t *testing.T) {
			ctx := ctxFor(t, 30*time.Second)
			sub := connect(t, p.url)
			ch := make(chan *nats.Msg, 100)
			s, err := sub.ChanSubscribe("kubestream.pods.payments.>", ch)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Unsubscribe()
			if err := sub.Flush(); err != nil {
				t.Fatal(err)
			}
			sink, err := natssink.Open(ctx, natssink.ConnOptions{URLs: []string{p.url}}, natssink.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if sink.JetStream() {
				t.Fatal("sink without a stream uses JetStream")
			}
			events := podEvents(t, 10, 3)
			noErrors(t, sink.Publish(ctx, events))
			for i, want := range events {
				select {
				case m := <-ch:
					if got := decode(t, m.Data); got.GetId() != want.GetId() {
						t.Fatalf("message %d is %s, want %s", i, got.GetId(), want.GetId())
					}
					if want := "kubestream.pods.payments." + natssink.EscapeToken(want.GetObject().GetName()); m.Subject != want {
						t.Fatalf("subject %q, want %q", m.Subject, want)
					}
				case <-ctx.Done():
					t.Fatalf("received %d of %d messages", i, len(events))
				}
			}
			if err := sink.Close(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestExistingStreamMustCoverSubjects(t *testing.T) {
	proc := natstest.StartProcess(t, natstest.ProcessOptions{})
	ctx := ctxFor(t, 30*time.Second)
	nc := connect(t, proc.URL())

	_, err := natssink.New(ctx, nc, natssink.Options{Stream: natssink.StreamOptions{Name: "MISSING"}})
	if err == nil || !strings.Contains(err.Error(), "--nats-stream-create") {
		t.Fatalf("missing stream: err = %v, want advice to pass --nats-stream-create", err)
	}

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>", "kubestream.pods.>"}}); err != nil {
		t.Fatal(err)
	}
	_, err = natssink.New(ctx, nc, natssink.Options{Stream: natssink.StreamOptions{Name: "OTHER"}})
	if err == nil || !strings.Contains(err.Error(), "kubestream.nodes.>") {
		t.Fatalf("stream not covering our subjects: err = %v, want the uncovered families named", err)
	}

	// Allowed to manage it: our subjects are added, theirs kept.
	so := natssink.StreamOptions{Name: "OTHER", Create: true, Retention: "limits", Storage: "file", Replicas: 1, MaxAge: time.Hour, DuplicateWindow: time.Minute}
	if _, err := natssink.New(ctx, nc, natssink.Options{Stream: so}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "OTHER")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.CachedInfo().Config.Subjects, ","); got != "other.>,kubestream.>" {
		t.Fatalf("subjects after update = %s", got)
	}
	// Now it covers them: verification alone passes.
	if _, err := natssink.New(ctx, nc, natssink.Options{Stream: natssink.StreamOptions{Name: "OTHER"}}); err != nil {
		t.Fatal(err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		opts natssink.Options
		want string
	}{
		{natssink.Options{SubjectPrefix: "a.*"}, "--nats-subject-prefix"},
		{natssink.Options{Stream: natssink.StreamOptions{Create: true}}, "--nats-stream-create needs --nats-stream"},
		{natssink.Options{Stream: natssink.StreamOptions{Name: "S", Storage: "disk", Replicas: 1}}, "--nats-stream-storage"},
		{natssink.Options{Stream: natssink.StreamOptions{Name: "S", Retention: "forever", Replicas: 1}}, "--nats-stream-retention"},
		{natssink.Options{Stream: natssink.StreamOptions{Name: "a.b", Replicas: 1}}, "may not contain"},
		{natssink.Options{Stream: natssink.StreamOptions{Name: "S", Replicas: 7}}, "--nats-stream-replicas"},
	} {
		errs := tc.opts.Validate()
		if len(errs) == 0 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error about %s", tc.opts, errs, tc.want)
		}
	}
	co := natssink.ConnOptions{URLs: []string{"http://x:1"}, Token: "t", User: "u"}
	if errs := co.Validate(); len(errs) != 2 {
		t.Errorf("ConnOptions.Validate = %v, want a bad scheme and two auth methods", errs)
	}
}
