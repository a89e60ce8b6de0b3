package benchproc

import (
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

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
		{0.25, " ", "250 ms"},
		{1.5, " ", "1.50 s"},
	} {
		if got := Seconds(c.s, c.sep); got != c.want {
			t.Errorf("Seconds(%v, %q) = %q, want %q", c.s, c.sep, got, c.want)
		}
	}
}

func TestOwnProcess(t *testing.T) {
	if _, err := CPUSeconds(os.Getpid()); err != nil {
		t.Error(err)
	}
	if rss, err := RSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("RSS = %d, %v", rss, err)
	}
}

func TestScanLogAndMetric(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("# TYPE kubestream_leader gauge\nkubestream_leader_x 7\nkubestream_leader 1\n"))
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
	if v := Metric(a, "kubestream_leader", time.Second); v != 1 {
		t.Errorf("kubestream_leader = %v, want 1", v)
	}
	if v := Metric(a, "kubestream_absent", time.Second); !math.IsNaN(v) {
		t.Errorf("absent metric = %v, want NaN", v)
	}
}
