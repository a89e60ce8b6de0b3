package stdout_test

import (
	"bufio"
	"bytes"
	"context"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/sink/stdout"
)

func TestOneJSONObjectPerLine(t *testing.T) {
	var buf bytes.Buffer
	s := stdout.New(&buf)
	events := []*kubestreamv1.Event{
		{Id: "a", Operation: kubestreamv1.Operation_OPERATION_CREATED, Object: &kubestreamv1.ObjectRef{Kind: "ConfigMap", Name: "kube-root-ca.crt"}},
		{Id: "b", Operation: kubestreamv1.Operation_OPERATION_DELETED, Payload: &kubestreamv1.Event_Change{Change: &kubestreamv1.ObjectChange{Previous: []byte{0, 1, 2}}}},
	}
	if errs := s.Publish(context.Background(), events); errs != nil {
		t.Fatal(errs)
	}
	sc := bufio.NewScanner(&buf)
	var i int
	for ; sc.Scan(); i++ {
		var got kubestreamv1.Event
		if err := protojson.Unmarshal(sc.Bytes(), &got); err != nil {
			t.Fatalf("line %d is not an Event: %v", i, err)
		}
		if !proto.Equal(&got, events[i]) {
			t.Fatalf("line %d = %v, want %v", i, &got, events[i])
		}
	}
	if i != 2 {
		t.Fatalf("%d lines, want 2", i)
	}
}

type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, bytes.ErrTooLarge }

func TestWriteErrorsAreReportedPerEvent(t *testing.T) {
	s := stdout.New(brokenWriter{})
	errs := s.Publish(context.Background(), []*kubestreamv1.Event{{Id: "a"}, {Id: "b"}})
	if len(errs) != 2 || errs[0] == nil || errs[1] == nil {
		t.Fatalf("errs = %v, want one error per event", errs)
	}
}
