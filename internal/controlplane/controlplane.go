// Package controlplane starts a real etcd and kube-apiserver on loopback for
// tests, benchmarks and first runs. The binaries are built from the Go module
// proxy by hack/build-controlplane.sh.
package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubestream/kubestream/internal/freeport"
)

// BinDirEnv names the directory holding etcd, kube-apiserver and kubectl.
const BinDirEnv = "KUBESTREAM_CONTROLPLANE_BIN"

// Options configure Start.
type Options struct {
	// BinDir holds etcd and kube-apiserver. Default: $KUBESTREAM_CONTROLPLANE_BIN,
	// else what hack/build-controlplane.sh prints.
	BinDir string
	// Dir keeps data, certificates, logs and the kubeconfig. Default: a new
	// temporary directory, removed by Stop.
	Dir string
	// Output receives both servers' logs. Default: files in Dir.
	Output io.Writer
	// APIServerArgs are appended to kube-apiserver's command line, after
	// the defaults, so a later flag wins (fault tests pass
	// --watch-cache=false and a short --etcd-compaction-interval to force
	// "too old resource version" on re-watches).
	APIServerArgs []string
}

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	// Dir holds data, logs and the kubeconfig.
	Dir string
	// Kubeconfig is the path of an admin kubeconfig.
	Kubeconfig string
	// URL is the apiserver's https address.
	URL string
	// Token is the admin bearer token.
	Token string

	removeDir bool
	procs     []*proc
	stopOnce  sync.Once
}

// RestConfig returns an admin client configuration.
func (c *ControlPlane) RestConfig() *rest.Config {
	return &rest.Config{
		Host:            c.URL,
		BearerToken:     c.Token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             -1, // no client-side throttling in tests
	}
}

type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// FindBinDir locates the control-plane binaries, building them when missing.
func FindBinDir() (string, error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		return dir, nil
	}
	script, err := findScript()
	if err != nil {
		return "", err
	}
	out, err := exec.Command("bash", script).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("build control plane with %s: %w: %s", script, err, ee.Stderr)
		}
		return "", fmt.Errorf("build control plane with %s: %w", script, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// findScript walks up from the working directory to the module root.
func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "hack", "build-controlplane.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("hack/build-controlplane.sh not found above the working directory; set %s to a directory with etcd and kube-apiserver", BinDirEnv)
		}
		dir = parent
	}
}

// Start runs etcd and kube-apiserver and waits until the apiserver is ready.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	if opts.BinDir == "" {
		dir, err := FindBinDir()
		if err != nil {
			return nil, err
		}
		opts.BinDir = dir
	}
	c := &ControlPlane{Dir: opts.Dir}
	if c.Dir == "" {
		dir, err := os.MkdirTemp("", "kubestream-controlplane-")
		if err != nil {
			return nil, err
		}
		c.Dir, c.removeDir = dir, true
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	ports, err := freeport.Ports(3)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	if err := c.startEtcd(opts, etcdClient, etcdPeer); err != nil {
		return nil, err
	}
	if err := c.startAPIServer(opts, etcdClient, apiPort); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := c.writeKubeconfig(); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

func (c *ControlPlane) output(opts Options, name string) (io.Writer, error) {
	if opts.Output != nil {
		return opts.Output, nil
	}
	return os.Create(filepath.Join(c.Dir, name+".log"))
}

func (c *ControlPlane) startEtcd(opts Options, client, peer int) error {
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	out, err := c.output(opts, "etcd")
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(opts.BinDir, "etcd"),
		"--data-dir", filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls", clientURL,
		"--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL,
		"--unsafe-no-fsync",
		"--quota-backend-bytes", "4294967296",
	)
	return c.run(cmd, out)
}

func (c *ControlPlane) startAPIServer(opts Options, etcdPort, port int) error {
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return err
	}
	c.Token = hex.EncodeToString(token)
	tokens := filepath.Join(c.Dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(c.Token+`,admin,admin-uid,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	key, pub, err := c.serviceAccountKeys()
	if err != nil {
		return err
	}
	out, err := c.output(opts, "kube-apiserver")
	if err != nil {
		return err
	}
	c.URL = fmt.Sprintf("https://127.0.0.1:%d", port)
	args := []string{
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", fmt.Sprint(port),
		"--cert-dir", filepath.Join(c.Dir, "certs"),
		"--token-auth-file", tokens,
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", pub,
		"--service-account-signing-key-file", key,
		"--service-cluster-ip-range", "10.96.0.0/24",
		// No controller-manager creates default service accounts here.
		"--disable-admission-plugins", "ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--max-requests-inflight", "2000",
		"--max-mutating-requests-inflight", "1000",
	}
	cmd := exec.Command(filepath.Join(opts.BinDir, "kube-apiserver"), append(args, opts.APIServerArgs...)...)
	return c.run(cmd, out)
}

func (c *ControlPlane) serviceAccountKeys() (keyPath, pubPath string, err error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return "", "", err
	}
	keyPath = filepath.Join(c.Dir, "sa.key")
	pubPath = filepath.Join(c.Dir, "sa.pub")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return "", "", err
	}
	return keyPath, pubPath, nil
}

func (c *ControlPlane) run(cmd *exec.Cmd, out io.Writer) error {
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group, so Stop reaches them and a terminal's ^C does not.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	c.procs = append(c.procs, p)
	return nil
}

func (c *ControlPlane) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 2 * time.Second}
	var last string
	for {
		for _, p := range c.procs {
			select {
			case <-p.exited:
				return fmt.Errorf("%s exited: see logs in %s", filepath.Base(p.cmd.Path), c.Dir)
			default:
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.Token)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, lastLine(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready (%s); logs in %s", last, c.Dir)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func (c *ControlPlane) writeKubeconfig() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubestream-local"] = &clientcmdapi.Cluster{Server: c.URL, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: c.Token}
	cfg.Contexts["kubestream-local"] = &clientcmdapi.Context{Cluster: "kubestream-local", AuthInfo: "admin"}
	cfg.CurrentContext = "kubestream-local"
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	return clientcmd.WriteToFile(*cfg, c.Kubeconfig)
}

// Stop ends both servers and removes a temporary Dir.
func (c *ControlPlane) Stop() {
	c.stopOnce.Do(func() {
		for i := len(c.procs) - 1; i >= 0; i-- {
			p := c.procs[i]
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
				<-p.exited
			}
		}
		if c.removeDir {
			_ = os.RemoveAll(c.Dir)
		}
	})
}
