package nats_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/pflag"

	"github.com/kubestream/kubestream/pkg/config"
	natssink "github.com/kubestream/kubestream/pkg/sink/nats"
)

// testPKI is a CA, a server certificate for nats.test and 127.0.0.1, and a
// client certificate, as PEM files.
type testPKI struct {
	caFile, clientCert, clientKey string
	pool                          *x509.CertPool
	server                        tls.Certificate
}

func newPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubestream test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(name string, usage x509.ExtKeyUsage, ips []net.IP) (certPEM, keyPEM []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, DNSNames: []string{name},
			KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
	}
	p := testPKI{caFile: filepath.Join(dir, "ca.pem"), clientCert: filepath.Join(dir, "client.pem"), clientKey: filepath.Join(dir, "client-key.pem")}
	write := func(path string, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	cc, ck := issue("kubestream", x509.ExtKeyUsageClientAuth, nil)
	write(p.clientCert, cc)
	write(p.clientKey, ck)
	sc, sk := issue("nats.test", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	if p.server, err = tls.X509KeyPair(sc, sk); err != nil {
		t.Fatal(err)
	}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	return p
}

// startTLSServer runs a NATS server that requires TLS with a client
// certificate signed by the test CA.
func startTLSServer(t *testing.T, pki testPKI) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		TLS: true, TLSVerify: true, TLSTimeout: 5,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pki.server}, ClientCAs: pki.pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("TLS NATS server not ready")
	}
	return fmt.Sprintf("tls://127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port)
}

// TestTLSFlags connects through the same --nats-tls-* flags Kafka spells
// alike, to a server requiring mutual TLS: the flags verify the server and
// present the client certificate; without the certificate, with the wrong
// server name, or without the CA the connection is refused.
func TestTLSFlags(t *testing.T) {
	pki := newPKI(t)
	url := startTLSServer(t, pki)
	cases := []struct {
		name  string
		args  []string
		works bool
	}{
		{"mutual TLS", []string{"--nats-tls-ca-file", pki.caFile, "--nats-tls-cert-file", pki.clientCert, "--nats-tls-key-file", pki.clientKey}, true},
		{"server name verified", []string{"--nats-tls-ca-file", pki.caFile, "--nats-tls-cert-file", pki.clientCert, "--nats-tls-key-file", pki.clientKey, "--nats-tls-server-name", "nats.test"}, true},
		{"deprecated spellings", []string{"--nats-tls-ca", pki.caFile, "--nats-tls-cert", pki.clientCert, "--nats-tls-key", pki.clientKey}, true},
		{"no client certificate", []string{"--nats-tls-ca-file", pki.caFile}, false},
		{"wrong server name", []string{"--nats-tls-ca-file", pki.caFile, "--nats-tls-cert-file", pki.clientCert, "--nats-tls-key-file", pki.clientKey, "--nats-tls-server-name", "other.test"}, false},
		{"unknown CA", []string{"--nats-tls-cert-file", pki.clientCert, "--nats-tls-key-file", pki.clientKey}, false},
		{"unknown CA, not verified", []string{"--nats-tls-cert-file", pki.clientCert, "--nats-tls-key-file", pki.clientKey, "--nats-tls-insecure-skip-verify"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var o natssink.ConnOptions
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			fs.SetOutput(new(discard))
			o.AddFlags(fs)
			if err := fs.Parse(append([]string{"--nats-url", url, "--nats-connect-timeout", "3s"}, c.args...)); err != nil {
				t.Fatal(err)
			}
			if errs := o.Validate(); len(errs) > 0 {
				t.Fatalf("Validate: %v", errs)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			nc, err := o.Connect(ctx)
			if c.works {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				defer nc.Close()
				if err := nc.Publish("kubestream.test", []byte("x")); err != nil {
					t.Fatal(err)
				}
				if err := nc.FlushTimeout(3 * time.Second); err != nil {
					t.Fatalf("flush over TLS: %v", err)
				}
				if !nc.TLSRequired() {
					t.Error("connected without TLS")
				}
				return
			}
			if err == nil {
				nc.Close()
				t.Fatal("connected, want a refusal")
			}
		})
	}
}

// The TLS settings are validated with the bus's flag names.
func TestTLSValidateNamesFlags(t *testing.T) {
	errs := config.TLS{CertFile: "/no/cert.pem"}.Validate("nats")
	if len(errs) != 2 || errs[0].Error() != "--nats-tls-cert-file and --nats-tls-key-file go together: give both for mutual TLS, or neither" ||
		errs[1].Error() != "--nats-tls-cert-file /no/cert.pem: no such file or directory" {
		t.Errorf("Validate() = %q", errs)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
