package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/sink/kafka"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
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
	sc, sk := issue("kafka.test", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	p.server, err = tls.X509KeyPair(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	return p
}

// mutualTLSPublished starts a broker that requires client certificates and
// publishes one pod event to it over mutual TLS.
func mutualTLSPublished(t *testing.T, ctx context.Context) (testPKI, kafka.Options) {
	t.Helper()
	pki := newPKI(t)
	c := newCluster(t, kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{pki.server},
		ClientCAs:    pki.pool, ClientAuth: tls.RequireAndVerifyClientCert,
	}))
	o := testOptions(c)
	o.TLS = kafka.TLSOptions{CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey, ServerName: "kafka.test"}
	s := openSink(t, ctx, o)
	publish(t, ctx, s, created(kinds.Pods, pod("a", "tls", "u", "1")))
	return pki, o
}

func TestMutualTLS(t *testing.T) {
	ctx := testContext(t)
	pki, o := mutualTLSPublished(t, ctx)

	reader := &tls.Config{RootCAs: pki.pool, ServerName: "kafka.test"}
	cc, _ := tls.LoadX509KeyPair(pki.clientCert, pki.clientKey)
	reader.Certificates = []tls.Certificate{cc}
	if recs := readTopic(t, ctx, o.Brokers, "kubestream.pods", kgo.DialTLSConfig(reader)); len(recs) != 1 {
		t.Fatalf("read %d records over TLS, want 1", len(recs))
	}

	// Without the client certificate the broker refuses: Open says so.
	bad := o
	bad.TLS.CertFile, bad.TLS.KeyFile = "", ""
	bad.DialTimeout = 2 * time.Second
	_, err := kafka.Open(ctx, bad)
	if err == nil {
		t.Fatalf("Open without a client certificate succeeded against a broker that requires one")
	}
	t.Logf("no client certificate: %v", err)
	// A CA that did not sign the broker's certificate fails verification.
	other := newPKI(t)
	bad = o
	bad.TLS.CAFile = other.caFile
	bad.DialTimeout = 2 * time.Second
	if _, err := kafka.Open(ctx, bad); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Open with the wrong CA: %v, want a certificate error", err)
	}
}

func TestSASL(t *testing.T) {
	for _, tc := range []struct {
		mechanism, kfakeName string
		reader               sasl.Mechanism
	}{
		{"plain", "PLAIN", plain.Auth{User: "kubestream", Pass: "s3cret"}.AsMechanism()},
		{"scram-sha-256", "SCRAM-SHA-256", scram.Auth{User: "kubestream", Pass: "s3cret"}.AsSha256Mechanism()},
		{"scram-sha-512", "SCRAM-SHA-512", scram.Auth{User: "kubestream", Pass: "s3cret"}.AsSha512Mechanism()},
	} {
		t.Run(tc.mechanism, func(t *testing.T) {
			ctx := testContext(t)
			c := newCluster(t, kfake.EnableSASL(), kfake.Superuser(tc.kfakeName, "kubestream", "s3cret"))
			o := testOptions(c)
			// The password comes from a file, as from a mounted Secret.
			pwFile := filepath.Join(t.TempDir(), "password")
			if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			o.SASL = kafka.SASLOptions{Mechanism: tc.mechanism, Username: "kubestream", PasswordFile: pwFile}
			s := openSink(t, ctx, o)
			publish(t, ctx, s, created(kinds.Pods, pod("a", "sasl", "u", "1")))
			if recs := readTopic(t, ctx, o.Brokers, "kubestream.pods", kgo.SASL(tc.reader)); len(recs) != 1 {
				t.Fatalf("read %d records, want 1", len(recs))
			}

			bad := o
			bad.SASL = kafka.SASLOptions{Mechanism: tc.mechanism, Username: "kubestream", Password: "wrong"}
			bad.DialTimeout = 2 * time.Second
			_, err := kafka.Open(ctx, bad)
			if err == nil {
				t.Fatalf("Open with a wrong password succeeded")
			}
			t.Logf("wrong password: %v", err)
		})
	}
}

// The consumers (tail, alert-bridge) reach a secured broker with the dialer
// the same flags build: mutual TLS here.
func TestDialerReadsFromASecuredBroker(t *testing.T) {
	ctx := testContext(t)
	pki, o := mutualTLSPublished(t, ctx)

	dialer, err := kafka.NewDialer(5*time.Second, o.TLS, o.SASL)
	if err != nil {
		t.Fatal(err)
	}
	var got []kafkago.Message
	for p := 0; p < o.Partitions && len(got) == 0; p++ {
		pr := kafkago.NewReader(kafkago.ReaderConfig{Brokers: o.Brokers, Topic: "kubestream.pods", Partition: p, Dialer: dialer, MaxWait: 100 * time.Millisecond})
		readCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if m, err := pr.ReadMessage(readCtx); err == nil {
			got = append(got, m)
		}
		cancel()
		pr.Close()
	}
	if len(got) != 1 || string(got[0].Key) != "pods/a/tls" {
		t.Fatalf("read %d records over mutual TLS with the dialer, want the pod's record", len(got))
	}

	if _, err := kafka.NewDialer(time.Second, kafka.TLSOptions{CertFile: pki.clientCert}, kafka.SASLOptions{}); err == nil {
		t.Fatal("a client certificate without its key was accepted")
	}
}
