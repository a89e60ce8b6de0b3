// Package benchproc is what the benchmark commands under hack (hack/bench,
// hack/bench-resume) share to run and measure a kubestream process: build
// the binary, find a free port for it, follow its log to the address it
// serves /metrics on, read its CPU time and resident memory from /proc and
// its metrics from /metrics, describe the machine, and format the figures.
//
// It is Linux only (/proc) and holds no benchmark logic of its own.
package benchproc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// GoBuild compiles pkg (such as ./cmd/kubestream) of the module the working
// directory is in into dir/name and returns the binary's path.
func GoBuild(dir, name, pkg string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("find the module root (run from inside the kubestream module): %v", err)
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = filepath.Dir(mod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// FreePort returns a loopback TCP port nobody listens on right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var addressRE = regexp.MustCompile(`"Serving metrics and health" address="([^"]+)"`)

// ScanLog copies kubestream's stderr to log line by line until it ends.
// The address of its first "Serving metrics and health" line is sent on
// addr when addr has room (make it buffered); each, when not nil, gets every
// line.
func ScanLog(stderr io.Reader, log io.Writer, addr chan<- string, each func(line string)) {
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(log, line)
		if m := addressRE.FindStringSubmatch(line); m != nil {
			select {
			case addr <- m[1]:
			default:
			}
		}
		if each != nil {
			each(line)
		}
	}
}

// CPUSeconds is utime+stime of process pid from /proc/<pid>/stat.
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read kubestream's CPU time: %w", err)
	}
	// The command name in parentheses may hold spaces: fields start after it.
	rest := b[bytes.LastIndexByte(b, ')')+2:]
	f := strings.Fields(string(rest))
	// utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc stat: %w", err)
	}
	return (utime + stime) / clockTicks, nil
}

// RSS is VmRSS of process pid, in bytes, from /proc/<pid>/status.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read kubestream's RSS: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// Metric reads one unlabelled sample from http://addr/metrics, waiting at
// most timeout for the answer (0: no limit); NaN when it does not answer or
// lacks the sample.
func Metric(addr, name string, timeout time.Duration) float64 {
	c := http.Client{Timeout: timeout}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return math.NaN()
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return math.NaN()
}

// Sleep waits for d or until ctx ends, and returns ctx's error if it ended.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Machine describes the machine a benchmark ran on.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpuModel"`
	GoVersion string `json:"goVersion"`
	Kernel    string `json:"kernel"`
}

// DescribeMachine reads the CPU model and kernel release from /proc; what
// it cannot read stays empty.
func DescribeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// Seconds formats a duration in seconds for a results table: "-" for NaN,
// milliseconds below one second (one decimal below 10 ms), else seconds with
// two decimals; sep goes between the number and the unit.
func Seconds(s float64, sep string) string {
	if math.IsNaN(s) {
		return "-"
	}
	if s < 0.01 {
		return fmt.Sprintf("%.1f%sms", s*1000, sep)
	}
	if s < 1 {
		return fmt.Sprintf("%.0f%sms", s*1000, sep)
	}
	return fmt.Sprintf("%.2f%ss", s, sep)
}
