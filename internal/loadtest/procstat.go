package loadtest

import (
	"fmt"
	"math"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
)

// CPUSeconds is the user and system CPU time process pid has used.
func CPUSeconds(pid int) (float64, error) {
	st, err := stat(pid)
	if err != nil {
		return 0, err
	}
	return st.CPUTime(), nil
}

// RSS is the resident memory of process pid in bytes (VmRSS).
func RSS(pid int) (int64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, fmt.Errorf("find process %d: %w", pid, err)
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0, fmt.Errorf("read the status of process %d: %w", pid, err)
	}
	return int64(st.VmRSS), nil
}

func stat(pid int) (procfs.ProcStat, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return procfs.ProcStat{}, fmt.Errorf("find process %d: %w", pid, err)
	}
	st, err := p.Stat()
	if err != nil {
		return procfs.ProcStat{}, fmt.Errorf("read the CPU time of process %d: %w", pid, err)
	}
	return st, nil
}

// Metric reads one unlabelled gauge or counter from http://addr/metrics,
// waiting at most timeout for the answer (0: no limit); NaN when the
// process does not answer or lacks the sample.
func Metric(addr, name string, timeout time.Duration) float64 {
	fams, err := Metrics(addr, timeout)
	if err != nil {
		return math.NaN()
	}
	return Sample(fams, name)
}

// Family is one metric family of a /metrics scrape.
type Family = dto.MetricFamily

// Metrics reads every metric family from http://addr/metrics.
func Metrics(addr string, timeout time.Duration) (map[string]*Family, error) {
	c := http.Client{Timeout: timeout}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", addr, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse the metrics of %s: %w", addr, err)
	}
	return fams, nil
}

// Sample is the value of the unlabelled sample of family name (a gauge, a
// counter or an untyped metric); NaN when there is none.
func Sample(fams map[string]*Family, name string) float64 {
	f, ok := fams[name]
	if !ok {
		return math.NaN()
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) > 0 {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Untyped != nil:
			return m.GetUntyped().GetValue()
		}
	}
	return math.NaN()
}

// Machine describes the machine a benchmark ran on.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpuModel"`
	GoVersion string `json:"goVersion"`
	Kernel    string `json:"kernel"`
	// LoadAverage is the 1-minute load average when the run ended: other
	// work on a shared machine shows here.
	LoadAverage float64 `json:"loadAverage1m"`
}

// DescribeMachine reads the CPU model, kernel release and load average;
// what it cannot read stays empty.
func DescribeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return m
	}
	if info, err := fs.CPUInfo(); err == nil && len(info) > 0 {
		m.CPUModel = info[0].ModelName
	}
	if l, err := fs.LoadAvg(); err == nil {
		m.LoadAverage = l.Load1
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
