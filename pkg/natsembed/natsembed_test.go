package natsembed_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubestream/kubestream/pkg/natsembed"
)

func TestEmbeddedServerKeepsStreamsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	s, err := natsembed.Start(natsembed.Options{Dir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	if got := natsembed.RunningURL(dir); got != s.URL() {
		t.Fatalf("RunningURL = %q, want %q", got, s.URL())
	}
	// A second process on the same data would corrupt it.
	if _, err := natsembed.Start(natsembed.Options{Dir: dir, Port: -1}); !errors.Is(err, natsembed.ErrDirInUse) {
		t.Fatalf("second Start on the same dir: %v, want ErrDirInUse", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.a", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	s.Shutdown()
	if got := natsembed.RunningURL(dir); got != "" {
		t.Fatalf("RunningURL after Shutdown = %q, want empty", got)
	}

	s, err = natsembed.Start(natsembed.Options{Dir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	nc, err = nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)
	stream, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, "s.a")
	if err != nil || string(m.Data) != "kept" {
		t.Fatalf("message after restart: %v, %v", m, err)
	}
	if nc.MaxPayload() != natsembed.DefaultMaxPayload {
		t.Fatalf("max payload %d, want %d", nc.MaxPayload(), natsembed.DefaultMaxPayload)
	}
}

func TestEmbeddedServerTakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if _, err := natsembed.Start(natsembed.Options{Dir: t.TempDir(), Port: port}); !errors.Is(err, natsembed.ErrPortInUse) {
		t.Fatalf("Start on a taken port: %v, want ErrPortInUse", err)
	}
	s, err := natsembed.Start(natsembed.Options{Dir: t.TempDir(), Port: port, FallbackPort: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if !s.Fallback || s.URL() == "nats://127.0.0.1:"+strconv.Itoa(port) {
		t.Fatalf("fallback server at %s (fallback %v), want another port than %d", s.URL(), s.Fallback, port)
	}
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}
