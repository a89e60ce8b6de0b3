package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kubestream/kubestream/internal/loadtest"
)

// proc is one kubestream process. Its events are read from the bus by a
// reader of the harness, not from the process.
type proc struct {
	name        string
	cmd         *exec.Cmd
	started     time.Time
	logPath     string
	metricsAddr string
	exited      chan struct{}
	exitedAt    time.Time

	mu    sync.Mutex
	lines []string // stderr lines matching logKeep
}

// logKeep are the log messages the harness reports (their timing, counts).
var logKeep = []string{`"Initial list synced"`, `"Loaded saved positions"`, `"Leading: publishing from now on"`, `"Stopped"`, `"Waiting to lead"`, `"Stopping publishing now"`}

// startProc runs `binary args...` with stderr going to logPath, and waits
// until it serves /metrics. started is taken just before the exec.
func startProc(name, binary string, args []string, logPath string) (*proc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, logPath: logPath, exited: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	// The Lease goes to namespace default: no POD_NAMESPACE from the caller.
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POD_NAMESPACE=") && !strings.HasPrefix(kv, "KUBESTREAM_") {
			env = append(env, kv)
		}
	}
	p.cmd.Env = env
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.cmd.Stdout = io.Discard
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kubestream %s: %w", name, err)
	}
	addr := make(chan string, 1)
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		defer logFile.Close()
		loadtest.ScanLog(stderr, logFile, addr, func(line string) {
			for _, k := range logKeep {
				if strings.Contains(line, k) {
					p.mu.Lock()
					p.lines = append(p.lines, line)
					p.mu.Unlock()
				}
			}
		})
	}()
	go func() {
		<-stderrDone
		_ = p.cmd.Wait()
		p.exitedAt = time.Now()
		close(p.exited)
	}()
	select {
	case p.metricsAddr = <-addr:
	case <-p.exited:
		return nil, fmt.Errorf("kubestream %s exited at start; log: %s", name, logPath)
	case <-time.After(60 * time.Second):
		p.kill()
		return nil, fmt.Errorf("kubestream %s did not report its listen address; log: %s", name, logPath)
	}
	return p, nil
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// term sends SIGTERM and waits for the exit; the "Stopped" line must say
// leftUnpublished=0.
func (p *proc) term(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("kubestream %s did not exit within %s of SIGTERM; log: %s", p.name, timeout, p.logPath)
	}
	if st := p.logLine(`"Stopped"`); !strings.Contains(st, "leftUnpublished=0") {
		return fmt.Errorf("kubestream %s's last words were not \"Stopped ... leftUnpublished=0\" (%q); log: %s", p.name, st, p.logPath)
	}
	return nil
}

// kill sends SIGKILL and waits for the exit.
func (p *proc) kill() {
	if p.running() {
		_ = p.cmd.Process.Kill()
	}
	<-p.exited
}

// logLine is the last kept log line containing s.
func (p *proc) logLine(s string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.lines) - 1; i >= 0; i-- {
		if strings.Contains(p.lines[i], s) {
			return p.lines[i]
		}
	}
	return ""
}

var tookRE = regexp.MustCompile(`took="([^"]+)"`)

// took is the took= value of the last log line containing s, 0 when absent
// (JSON has no NaN).
func (p *proc) took(s string) float64 {
	m := tookRE.FindStringSubmatch(p.logLine(s))
	if m == nil {
		return 0
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		return 0
	}
	return d.Seconds()
}

// cpuSeconds is utime+stime of the process from /proc/<pid>/stat.
func (p *proc) cpuSeconds() (float64, error) { return loadtest.CPUSeconds(p.cmd.Process.Pid) }

// metric reads one unlabelled sample from /metrics; NaN when absent.
func (p *proc) metric(name string) float64 {
	return loadtest.Metric(p.metricsAddr, name, 5*time.Second)
}

// ready reports whether /readyz answers 200.
func (p *proc) ready() bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.metricsAddr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitStateSettled waits until kubestream_state_positions is at least want
// and kubestream_state_positions_written_total did not grow for quiet
// (longer than the 1 s flush interval).
func (p *proc) waitStateSettled(ctx context.Context, want int, quiet, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last, since := math.NaN(), time.Now()
	for {
		known := p.metric("kubestream_state_positions")
		written := p.metric("kubestream_state_positions_written_total")
		if written != last {
			last, since = written, time.Now()
		}
		if known >= float64(want) && time.Since(since) >= quiet {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("kubestream %s exited while waiting for its state; log: %s", p.name, p.logPath)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kubestream %s: state not settled within %s (positions %v of %d, written %v); log: %s", p.name, timeout, known, want, written, p.logPath)
		}
		if err := loadtest.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitFor polls cond every 10 ms until it holds or timeout passes. Any of
// procs exiting ends the wait with an error.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool, procs ...*proc) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		for _, p := range procs {
			if !p.running() {
				return fmt.Errorf("kubestream %s exited while waiting for %s; log: %s", p.name, what, p.logPath)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not happen within %s", what, timeout)
		}
		if err := loadtest.Sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}
