// Package natstest starts real NATS servers for tests: a separate
// nats-server process (the Debian package, /usr/bin/nats-server) or the
// embedded server kubestream runs by default.
package natstest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kubestream/kubestream/internal/testbin"
)

// Binary is the nats-server executable; $NATS_SERVER overrides it.
func Binary() string {
	if b := os.Getenv("NATS_SERVER"); b != "" {
		return b
	}
	return "nats-server"
}

// Process is a nats-server process with JetStream. It keeps its port and
// store across Restart.
type Process struct {
	t    testing.TB
	Port int
	Dir  string
	conf string

	mu  sync.Mutex
	cmd *exec.Cmd
	log *testbin.SyncBuffer
}

// ProcessOptions tune the server.
type ProcessOptions struct {
	// MaxPayload sets max_payload when positive.
	MaxPayload int
	// Config is extra configuration file text (authorization blocks etc.).
	Config string
}

// StartProcess starts nats-server -js on a free loopback port with a store
// under a test directory; it is stopped when the test ends.
func StartProcess(t testing.TB, opts ProcessOptions) *Process {
	t.Helper()
	if _, err := exec.LookPath(Binary()); err != nil {
		t.Fatalf("nats-server not found (apt-get install nats-server, or set NATS_SERVER): %v", err)
	}
	p := &Process{t: t, Port: FreePort(t), Dir: t.TempDir()}
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream { store_dir: %q }\n", p.Port, filepath.Join(p.Dir, "js"))
	if opts.MaxPayload > 0 {
		conf += fmt.Sprintf("max_payload: %d\n", opts.MaxPayload)
	}
	conf += opts.Config
	p.conf = filepath.Join(p.Dir, "server.conf")
	if err := os.WriteFile(p.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p.start()
	t.Cleanup(p.Stop)
	return p
}

// URL is the client URL.
func (p *Process) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(p.Port) }

func (p *Process) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = &testbin.SyncBuffer{}
	cmd := exec.Command(Binary(), "-c", p.conf)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start nats-server: %v", err)
	}
	p.cmd = cmd
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	p.t.Fatalf("nats-server did not listen on %d within 20s; log:\n%s", p.Port, p.log.String())
}

// Stop terminates the server gracefully (SIGTERM: JetStream flushes its
// files) and waits for it.
func (p *Process) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
}

// Restart stops the server and starts it again on the same port and store.
func (p *Process) Restart() {
	p.t.Helper()
	p.Stop()
	p.start()
}

// Start starts a stopped server again on the same port and store.
func (p *Process) Start() {
	p.t.Helper()
	p.start()
}

// Log returns what the server printed since its last start.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// FreePort returns a loopback port nobody listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
