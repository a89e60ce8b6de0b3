// Package natsembed runs a NATS server with JetStream inside the kubestream
// process: the default broker of `kubestream run`, so a first run needs
// nothing but a cluster. It listens on loopback only and keeps its data
// under one directory, which it locks so two processes never share it.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"k8s.io/klog/v2"
)

// DefaultPort is the NATS client port.
const DefaultPort = 4222

// DefaultMaxPayload is 8 MiB: a Kubernetes object may be 1.5 MiB and an
// update event carries two states, so the server's 1 MiB default would
// truncate large objects.
const DefaultMaxPayload = 8 << 20

// urlFile holds the URL of the running server inside the data directory, so
// `kubestream tail` finds it even on a fallback port.
const urlFile = "url"

// Options configure the embedded server.
type Options struct {
	// Dir keeps JetStream's data (Dir/jetstream), the lock and the URL file.
	// Default DefaultDir().
	Dir string
	// Host to listen on. Default 127.0.0.1: the server has no
	// authentication, so it must not be reachable from other hosts.
	Host string
	// Port to listen on. Default 4222; server.RANDOM_PORT (-1) picks a free one.
	Port int
	// FallbackPort listens on a free port when Port is taken, instead of
	// failing.
	FallbackPort bool
	// MaxPayload is the largest message accepted. Default DefaultMaxPayload.
	MaxPayload int32
	// Logger receives the server's notices and errors. Default klog.Background().
	Logger *klog.Logger
}

// DefaultDir is $XDG_DATA_HOME/kubestream/nats, else
// ~/.local/share/kubestream/nats, else a directory under the system's
// temporary directory.
func DefaultDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "kubestream", "nats")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "kubestream", "nats")
	}
	return filepath.Join(os.TempDir(), "kubestream", "nats")
}

// ErrDirInUse is returned when another process holds the data directory.
var ErrDirInUse = errors.New("embedded NATS data directory in use")

// ErrPortInUse is returned when the port is taken and FallbackPort is off.
var ErrPortInUse = errors.New("embedded NATS port in use")

// Server is a running embedded NATS server.
type Server struct {
	srv  *server.Server
	lock *os.File
	dir  string
	url  string
	// Fallback is set when the server listens on another port than asked.
	Fallback bool
}

// Start starts the server and waits until it accepts connections.
func Start(opts Options) (*Server, error) {
	if opts.Dir == "" {
		opts.Dir = DefaultDir()
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = DefaultMaxPayload
	}
	logger := klog.Background()
	if opts.Logger != nil {
		logger = *opts.Logger
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded NATS: create data directory (set --nats-embedded-dir to a writable place): %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	port := opts.Port
	fallback := false
	if port != server.RANDOM_PORT && !portFree(opts.Host, port) {
		if !opts.FallbackPort {
			lock.Close()
			return nil, fmt.Errorf("%w: %s:%d is taken: stop what listens there, pick another --nats-embedded-port, or connect to that server with --nats-url nats://%s:%d", ErrPortInUse, opts.Host, port, opts.Host, port)
		}
		port, fallback = server.RANDOM_PORT, true
	}
	sopts := &server.Options{
		ServerName: "kubestream-embedded",
		Host:       opts.Host,
		Port:       port,
		NoSigs:     true, // kubestream handles signals and shuts down in order
		MaxPayload: opts.MaxPayload,
		JetStream:  true,
		StoreDir:   filepath.Join(opts.Dir, "jetstream"),
		// The HTTP monitor and cluster ports stay off: nothing listens but
		// the client port on loopback.
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	srv.SetLoggerV2(&klogAdapter{logger: logger.WithName("nats-server")}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		lock.Close()
		return nil, fmt.Errorf("embedded NATS: server not ready within 30s on %s:%d (data in %s)", opts.Host, port, opts.Dir)
	}
	s := &Server{srv: srv, lock: lock, dir: opts.Dir, url: srv.ClientURL(), Fallback: fallback}
	if err := os.WriteFile(filepath.Join(opts.Dir, urlFile), []byte(s.url+"\n"), 0o600); err != nil {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS: write URL file: %w", err)
	}
	return s, nil
}

// URL is the nats:// address clients connect to.
func (s *Server) URL() string { return s.url }

// Dir is the data directory.
func (s *Server) Dir() string { return s.dir }

// Shutdown stops the server, which flushes JetStream's files, and releases
// the data directory.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	os.Remove(filepath.Join(s.dir, urlFile))
	s.lock.Close()
}

// RunningURL returns the URL of the embedded server that runs with data in
// dir, or "" when none does.
func RunningURL(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, urlFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// lockDir takes an exclusive lock on dir; the lock dies with the process.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "kubestream.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another kubestream process keeps its embedded NATS data in %s: stop it, or give this one its own --nats-embedded-dir", ErrDirInUse, dir)
		}
		return nil, fmt.Errorf("embedded NATS: lock %s: %w", dir, err)
	}
	return f, nil
}

func portFree(host string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// klogAdapter routes the server's log to klog: notices at verbosity 2 (the
// server is chatty at start), warnings at 0, errors as errors.
type klogAdapter struct{ logger klog.Logger }

func (a *klogAdapter) Noticef(format string, v ...any) {
	a.logger.V(2).Info("Embedded NATS notice", "msg", fmt.Sprintf(format, v...))
}

func (a *klogAdapter) Warnf(format string, v ...any) {
	a.logger.Info("Embedded NATS warning", "msg", fmt.Sprintf(format, v...))
}

func (a *klogAdapter) Fatalf(format string, v ...any) {
	a.logger.Error(fmt.Errorf(format, v...), "Embedded NATS fatal error")
}

func (a *klogAdapter) Errorf(format string, v ...any) {
	a.logger.Error(fmt.Errorf(format, v...), "Embedded NATS error")
}

func (a *klogAdapter) Debugf(format string, v ...any) {
	a.logger.V(5).Info("Embedded NATS debug", "msg", fmt.Sprintf(format, v...))
}

func (a *klogAdapter) Tracef(format string, v ...any) {
	a.logger.V(6).Info("Embedded NATS trace", "msg", fmt.Sprintf(format, v...))
}
