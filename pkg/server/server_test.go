package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kubestream/kubestream/pkg/pipeline"
	"github.com/kubestream/kubestream/pkg/server"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestEndpoints(t *testing.T) {
	var ready atomic.Bool
	srv, err := server.Listen(server.Options{
		Address: "127.0.0.1:0",
		Stats: func() pipeline.Stats {
			return pipeline.Stats{Published: 7, Coalesced: 3, Lost: 1, DeletesLost: 1, Pending: 2}
		},
		Ready: func() error {
			if !ready.Load() {
				return errors.New("initial list not acknowledged by the broker yet")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	base := "http://" + srv.Addr()

	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "initial list") {
		t.Errorf("/readyz before sync: %d %q, want 503 saying why", code, body)
	}
	ready.Store(true)
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after sync: %d", code)
	}
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{"kubestream_events_published_total 7", "kubestream_changes_coalesced_total 3", "kubestream_events_lost_total 1", "kubestream_deletes_lost_total 1", "kubestream_pending_changes 2", "go_goroutines"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestTakenAddressIsAClearError(t *testing.T) {
	first, err := server.Listen(server.Options{Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = server.Listen(server.Options{Address: first.Addr()})
	if err == nil || !strings.Contains(err.Error(), "--listen-address") {
		t.Fatalf("err = %v, want it to name --listen-address", err)
	}
}
