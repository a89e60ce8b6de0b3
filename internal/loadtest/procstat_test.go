package loadtest

import (
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestOwnProcess(t *testing.T) {
	before, err := CPUSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn some CPU so the clock ticks over at least once (10 ms ticks).
	deadline := time.Now().Add(100 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	after, err := CPUSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("CPU seconds did not grow while spinning: %v then %v", before, after)
	}
	if rss, err := RSS(os.Getpid()); err != nil || rss < 1<<20 {
		t.Errorf("RSS = %d, %v; want at least 1 MiB", rss, err)
	}
	if _, err := CPUSeconds(-1); err == nil {
		t.Error("CPUSeconds of no process: want an error")
	}
}

func TestScanLogAndMetric(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("# TYPE kubestream_leader gauge\nkubestream_leader 1\n" +
			"# TYPE kubestream_events_published_total counter\nkubestream_events_published_total{sink=\"kafka\"} 9\nkubestream_events_published_total 42\n" +
			"# TYPE go_memstats_heap_inuse_bytes gauge\ngo_memstats_heap_inuse_bytes 1.5e+07\n"))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	stderr := `{"msg":"Starting"}` + "\n" + `I0101 "Serving metrics and health" address="` + addr + `"` + "\n" + `{"msg":"Stopped"}` + "\n"
	var log strings.Builder
	got := make(chan string, 1)
	var lines []string
	ScanLog(strings.NewReader(stderr), &log, got, func(l string) { lines = append(lines, l) })
	if log.String() != stderr || len(lines) != 3 {
		t.Errorf("log %q, %d lines passed on", log.String(), len(lines))
	}
	a := <-got
	if a != addr {
		t.Fatalf("address %q, want %q", a, addr)
	}
	for name, want := range map[string]float64{"kubestream_leader": 1, "kubestream_events_published_total": 42, "go_memstats_heap_inuse_bytes": 15e6} {
		if v := Metric(a, name, time.Second); v != want {
			t.Errorf("%s = %v, want %v (the unlabelled sample)", name, v, want)
		}
	}
	if v := Metric(a, "kubestream_absent", time.Second); !math.IsNaN(v) {
		t.Errorf("absent metric = %v, want NaN", v)
	}
}

func TestMetricsRejectsGarbage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("this is { not the text format\n"))
	}))
	defer srv.Close()
	if _, err := Metrics(strings.TrimPrefix(srv.URL, "http://"), time.Second); err == nil {
		t.Error("want a parse error")
	}
}

func TestSeconds(t *testing.T) {
	for _, c := range []struct {
		s    float64
		sep  string
		want string
	}{
		{math.NaN(), "", "-"},
		{0.0042, "", "4.2ms"},
		{0.25, "", "250ms"},
		{1.5, "", "1.50s"},
		{0.0042, " ", "4.2 ms"},
		{1.5, " ", "1.50 s"},
	} {
		if got := Seconds(c.s, c.sep); got != c.want {
			t.Errorf("Seconds(%v, %q) = %q, want %q", c.s, c.sep, got, c.want)
		}
	}
}
