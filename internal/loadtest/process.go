package loadtest

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// process is the program under measurement (kubestream, or the floor
// watcher) and, when its events go to a broker, the reader that reads them
// back (`kubestream tail`).
type process struct {
	cmd *exec.Cmd
	// reader is `kubestream tail` for broker sinks; nil when the events are
	// read from the process's own stdout.
	reader      *exec.Cmd
	rec         *Recorder
	logPath     string
	metricsAddr string
	exited      chan struct{}
	stderrDone  chan struct{}
	// readDone is closed once the events' pipe reached its end: Wait closes
	// the pipe, so it must come after.
	readDone    chan struct{}
	stoppedLine string
	// floor processes have no "Stopped ... leftUnpublished=0" line.
	floor bool
}

// startProcess runs binary and reads its events: from its stdout, or when
// readerArgs are given, from the stdout of `binary readerArgs...` started
// once the first serves /metrics; env is added to the first's environment.
func startProcess(binary string, args, env, readerArgs []string, logPath string, floor bool) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &process{rec: NewRecorder(), logPath: logPath, exited: make(chan struct{}), stderrDone: make(chan struct{}), floor: floor}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = append(append(os.Environ(), "POD_NAME=bench"), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(binary), err)
	}
	addr := make(chan string, 1)
	go func() {
		defer close(p.stderrDone)
		defer logFile.Close()
		ScanLog(stderr, logFile, addr, func(line string) {
			if strings.Contains(line, `"Stopped"`) {
				p.stoppedLine = line
			}
		})
	}()
	p.readDone = make(chan struct{})
	if readerArgs == nil {
		go func() {
			defer close(p.readDone)
			p.rec.Read(stdout)
		}()
	} else {
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
	}
	go func() {
		if readerArgs == nil {
			<-p.readDone
		}
		<-p.stderrDone
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	select {
	case p.metricsAddr = <-addr:
	case <-p.exited:
		return nil, fmt.Errorf("%s exited at start; log: %s", filepath.Base(binary), logPath)
	case <-time.After(60 * time.Second):
		p.kill()
		return nil, fmt.Errorf("%s did not report its listen address; log: %s", filepath.Base(binary), logPath)
	}
	if readerArgs != nil {
		p.reader = exec.Command(binary, readerArgs...)
		p.reader.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		p.reader.Stderr = os.Stderr
		out, err := p.reader.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := p.reader.Start(); err != nil {
			p.kill()
			return nil, fmt.Errorf("start kubestream tail: %w", err)
		}
		go func() {
			defer close(p.readDone)
			p.rec.Read(out)
		}()
	}
	return p, nil
}

// stop sends SIGTERM and returns the exit code; kubestream must say it left
// nothing unpublished.
func (p *process) stop(timeout time.Duration) (int, error) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.kill()
		return -1, fmt.Errorf("process did not exit within %s of SIGTERM; log: %s", timeout, p.logPath)
	}
	if p.reader != nil {
		_ = p.reader.Process.Signal(syscall.SIGTERM)
		// Read the reader's output to its end before Wait closes the pipe
		// (otherwise the last read fails with "file already closed").
		select {
		case <-p.readDone:
		case <-time.After(timeout):
			_ = p.reader.Process.Kill()
			<-p.readDone
		}
		_ = p.reader.Wait()
		p.reader = nil
	}
	if err := p.rec.Err(); err != nil {
		return -1, fmt.Errorf("read the events: %w", err)
	}
	if !p.floor && !strings.Contains(p.stoppedLine, "leftUnpublished=0") {
		return -1, fmt.Errorf("kubestream's last words were not \"Stopped ... leftUnpublished=0\" (%q); log: %s", p.stoppedLine, p.logPath)
	}
	return p.cmd.ProcessState.ExitCode(), nil
}

func (p *process) kill() {
	if p.reader != nil && p.reader.Process != nil {
		_ = p.reader.Process.Kill()
		_ = p.reader.Wait()
		p.reader = nil
	}
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *process) cpuSeconds() (float64, error) { return CPUSeconds(p.cmd.Process.Pid) }

func (p *process) rss() (int64, error) { return RSS(p.cmd.Process.Pid) }

// metric reads one unlabelled sample; NaN when absent (the floor watcher
// has only the Go runtime's metrics).
func (p *process) metric(name string) float64 { return Metric(p.metricsAddr, name, 10*time.Second) }

// metricOr0 is metric with 0 for absent.
func (p *process) metricOr0(name string) float64 {
	if v := p.metric(name); !math.IsNaN(v) {
		return v
	}
	return 0
}

func (p *process) saveProfile(ctx context.Context, path, dst string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.metricsAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s", path, resp.Status)
	}
	if dst != os.DevNull {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("save %s: %w", path, err)
	}
	return f.Close()
}
