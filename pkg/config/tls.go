package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"
)

// TLS is a client's TLS settings, spelled the same for every bus:
// --<bus>-tls, --<bus>-tls-ca-file, --<bus>-tls-cert-file,
// --<bus>-tls-key-file, --<bus>-tls-server-name and
// --<bus>-tls-insecure-skip-verify.
type TLS struct {
	// Enable turns TLS on with the system's roots; any other field implies it.
	Enable bool
	// CAFile verifies the server's certificate (default: system roots).
	CAFile string
	// CertFile and KeyFile are the client certificate for mutual TLS.
	CertFile, KeyFile string
	// ServerName is verified in the server's certificate (default: the host).
	ServerName string
	// InsecureSkipVerify does not verify the server (testing only).
	InsecureSkipVerify bool
}

// AddFlags registers the --<bus>-tls-* flags bound to t, with t's values as
// defaults; server names the peer in the help ("brokers", "NATS server").
func (t *TLS) AddFlags(fs *pflag.FlagSet, bus, server string) {
	fs.BoolVar(&t.Enable, bus+"-tls", t.Enable, "connect with TLS (implied by any other --"+bus+"-tls-* flag)")
	fs.StringVar(&t.CAFile, bus+"-tls-ca-file", t.CAFile, "PEM CA bundle that signs the "+server+"'s certificates (default: system roots)")
	fs.StringVar(&t.CertFile, bus+"-tls-cert-file", t.CertFile, "PEM client certificate for mutual TLS (with --"+bus+"-tls-key-file)")
	fs.StringVar(&t.KeyFile, bus+"-tls-key-file", t.KeyFile, "PEM private key of --"+bus+"-tls-cert-file")
	fs.StringVar(&t.ServerName, bus+"-tls-server-name", t.ServerName, "name to verify in the "+server+"'s certificates (default: the host connected to)")
	fs.BoolVar(&t.InsecureSkipVerify, bus+"-tls-insecure-skip-verify", t.InsecureSkipVerify, "do not verify the "+server+"'s certificates (testing only)")
}

// Enabled reports whether any setting asks for TLS.
func (t TLS) Enabled() bool {
	return t.Enable || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify
}

// Validate reports every problem, naming the bus's flags.
func (t TLS) Validate(bus string) []error {
	var errs []error
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, fmt.Errorf("--%s-tls-cert-file and --%s-tls-key-file go together: give both for mutual TLS, or neither", bus, bus))
	}
	for _, f := range []struct{ flag, path string }{{"ca-file", t.CAFile}, {"cert-file", t.CertFile}, {"key-file", t.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("--%s-tls-%s %s: %w", bus, f.flag, f.path, errors.Unwrap(err)))
		}
	}
	return errs
}

// ClientConfig builds the client TLS configuration, nil when TLS is off.
func (t TLS) ClientConfig(bus string) (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, documented as testing only
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read --%s-tls-ca-file: %w", bus, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--%s-tls-ca-file %s holds no PEM certificate", bus, t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate --%s-tls-cert-file %s / --%s-tls-key-file %s: %w", bus, t.CertFile, bus, t.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
