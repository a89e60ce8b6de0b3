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

	"github.com/kubestream/kubestream/pkg/tail"
)

// process is the program under measurement (kubestream, or the floor
// watcher) and, when its events go to a broker, the reader that reads them
// back: in the harness's process, with pkg/tail's sources.
type process struct {
	cmd *exec.Cmd
	// reader reads the events back from a broker sink; nil when they are
	// read from the process's own stdout. stopReader ends its context.
	reader      *brokerReader
	stopReader  context.CancelFunc
	rec         *Recorder
	logPath     string
	metricsAddr string
	exited      chan struct{}
	stderrDone  chan struct{}
	// readDone is closed once the events were read to their end: the
	// stdout pipe's end (Wait closes the pipe, so it must come after), or
	// the broker reader's return.
	readDone chan struct{}
	// readerDone is readDone for a broker reader, nil otherwise: waiting
	// for events ends when the reader ended.
	readerDone  <-chan struct{}
	stoppedLine string
	// floor processes have no "Stopped ... leftUnpublished=0" line.
	floor bool
}

// startProcess runs binary and reads its events: from its stdout, or when
// newReader is given, from the source it returns once binary serves
// /metrics; env is added to binary's environment.
func startProcess(binary string, args, env []string, newReader func() (tail.Source, error), logPath string, floor bool) (*process, error) {
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
	stdoutDone := make(chan struct{})
	go func() {
		defer close(stdoutDone)
		if newReader == nil {
			p.rec.Read(stdout)
		} else {
			_, _ = io.Copy(io.Discard, stdout)
		}
	}()
	if newReader == nil {
		p.readDone = stdoutDone
	}
	go func() {
		<-stdoutDone
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
	if newReader != nil {
		src, err := newReader()
		if err != nil {
			p.kill()
			return nil, fmt.Errorf("read the events back: %w; log: %s", err, logPath)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r, done := newBrokerReader(p.rec), p.readDone
		p.reader, p.stopReader, p.readerDone = r, cancel, done
		go func() {
			defer close(done)
			r.run(ctx, src)
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
		// kubestream exited: what it published is on the broker. Read on
		// until the reader has read nothing for readerQuiet since then (the
		// Kafka readers poll every 250 ms), then stop it.
		exited := time.Now()
		deadline := exited.Add(timeout)
	quiet:
		for min(p.reader.idle(), time.Since(exited)) < readerQuiet && time.Now().Before(deadline) {
			select {
			case <-p.readDone: // it failed: Err says why
				break quiet
			case <-time.After(20 * time.Millisecond):
			}
		}
		if err := p.endReader(timeout); err != nil {
			return -1, err
		}
	}
	if err := p.rec.Err(); err != nil {
		return -1, fmt.Errorf("read the events: %w", err)
	}
	if !p.floor && !strings.Contains(p.stoppedLine, "leftUnpublished=0") {
		return -1, fmt.Errorf("kubestream's last words were not \"Stopped ... leftUnpublished=0\" (%q); log: %s", p.stoppedLine, p.logPath)
	}
	return p.cmd.ProcessState.ExitCode(), nil
}

// readerQuiet is how long the broker reader must have read nothing after
// kubestream exited before it is stopped.
const readerQuiet = time.Second

// endReader stops the broker reader and waits for it to return.
func (p *process) endReader(timeout time.Duration) error {
	if p.reader == nil {
		return nil
	}
	p.stopReader()
	select {
	case <-p.readDone:
		p.reader = nil
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("the broker reader did not stop within %s", timeout)
	}
}

func (p *process) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	_ = p.endReader(30 * time.Second)
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
