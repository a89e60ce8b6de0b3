package nats

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/kubestream/kubestream/pkg/config"
)

// ConnOptions say how to reach a NATS server. run and tail share them.
type ConnOptions struct {
	// URLs of the servers (nats://host:4222, tls://host:4222). More than one
	// lets the client fail over within a cluster.
	URLs []string
	// Name is the connection name the server shows in its monitoring.
	Name string

	// At most one way to authenticate: a token, a user and password, an
	// NKey seed file or a .creds file (JWT and seed).
	Token, TokenFile       string
	User                   string
	Password, PasswordFile string
	NKeySeedFile           string
	CredsFile              string

	// TLS, spelled as for every bus (--nats-tls-ca-file, ...). Any of it
	// turns TLS on, as does a tls:// URL.
	TLS config.TLS

	// ReconnectBuffer bounds the bytes nats.go keeps for publishes made while
	// it reconnects; past it publishing fails and the pipeline retries.
	ReconnectBuffer int
	// ConnectTimeout bounds the first connection.
	ConnectTimeout time.Duration
}

// DefaultReconnectBuffer is 8 MiB, nats.go's own default.
const DefaultReconnectBuffer = 8 << 20

// AddFlags registers the connection flags, all prefixed "nats-".
func (o *ConnOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&o.URLs, "nats-url", nil, "NATS server URLs, comma-separated (nats://host:4222, tls://host:4222)")
	fs.StringVar(&o.Name, "nats-name", "kubestream", "connection name shown by the server's monitoring")
	fs.StringVar(&o.Token, "nats-token", "", "NATS authentication token (prefer --nats-token-file or KUBESTREAM_NATS_TOKEN)")
	fs.StringVar(&o.TokenFile, "nats-token-file", "", "file holding the NATS authentication token")
	fs.StringVar(&o.User, "nats-user", "", "NATS user name")
	fs.StringVar(&o.Password, "nats-password", "", "NATS password (prefer --nats-password-file or KUBESTREAM_NATS_PASSWORD)")
	fs.StringVar(&o.PasswordFile, "nats-password-file", "", "file holding the NATS password")
	fs.StringVar(&o.NKeySeedFile, "nats-nkey-seed-file", "", "file holding an NKey user seed (SU...)")
	fs.StringVar(&o.CredsFile, "nats-creds-file", "", "NATS .creds file (user JWT and NKey seed)")
	o.TLS.AddFlags(fs, "nats", "NATS server")
	// The spellings before TLS flags were the same for every bus.
	for old, flag := range map[string]*string{"nats-tls-ca": &o.TLS.CAFile, "nats-tls-cert": &o.TLS.CertFile, "nats-tls-key": &o.TLS.KeyFile} {
		fs.StringVar(flag, old, *flag, "")
		_ = fs.MarkDeprecated(old, "use --"+old+"-file")
	}
	fs.IntVar(&o.ReconnectBuffer, "nats-reconnect-buffer", DefaultReconnectBuffer, "bytes of publishes kept while reconnecting; past it publishes fail and are retried")
	fs.DurationVar(&o.ConnectTimeout, "nats-connect-timeout", 10*time.Second, "how long the first connection may take")
}

// Validate reports every problem with the options, each saying how to fix it.
func (o *ConnOptions) Validate() []error {
	var errs []error
	for _, u := range o.URLs {
		if err := validateURL(u); err != nil {
			errs = append(errs, err)
		}
	}
	methods := 0
	if o.Token != "" || o.TokenFile != "" {
		methods++
		if o.Token != "" && o.TokenFile != "" {
			errs = append(errs, errors.New("--nats-token and --nats-token-file both set: use one"))
		}
	}
	if o.User != "" || o.Password != "" || o.PasswordFile != "" {
		methods++
		if o.User == "" {
			errs = append(errs, errors.New("--nats-password given without --nats-user"))
		}
		if o.Password != "" && o.PasswordFile != "" {
			errs = append(errs, errors.New("--nats-password and --nats-password-file both set: use one"))
		}
	}
	if o.NKeySeedFile != "" {
		methods++
	}
	if o.CredsFile != "" {
		methods++
	}
	if methods > 1 {
		errs = append(errs, errors.New("more than one NATS authentication method given: use one of --nats-token, --nats-user/--nats-password, --nats-nkey-seed-file, --nats-creds-file"))
	}
	for flag, path := range map[string]string{"--nats-token-file": o.TokenFile, "--nats-password-file": o.PasswordFile,
		"--nats-nkey-seed-file": o.NKeySeedFile, "--nats-creds-file": o.CredsFile} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", flag, err))
		}
	}
	errs = append(errs, o.TLS.Validate("nats")...)
	if o.ReconnectBuffer < 0 {
		errs = append(errs, fmt.Errorf("--nats-reconnect-buffer %d is negative: give a size in bytes (0 takes the 8 MiB default)", o.ReconnectBuffer))
	}
	return errs
}

func validateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--nats-url %q is not a URL: write nats://host:4222 or tls://host:4222", raw)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
		return nil
	}
	return fmt.Errorf("--nats-url %q: scheme %q is not nats, tls, ws or wss", raw, u.Scheme)
}

// Connect dials the servers. The connection reconnects forever: while it is
// down publishes fail (or wait in the bounded reconnect buffer) and the
// pipeline retries them.
func (o *ConnOptions) Connect(ctx context.Context) (*nats.Conn, error) {
	logger := klog.FromContext(ctx)
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectBufSize(o.reconnectBuffer()),
		nats.Timeout(o.connectTimeout()),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Info("Disconnected from NATS, reconnecting", "err", err.Error())
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("Reconnected to NATS", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			// Permission violations on publish arrive here, asynchronously.
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			logger.Error(err, "NATS asynchronous error", "subscription", subject)
		}),
	}
	auth, err := o.authOptions()
	if err != nil {
		return nil, err
	}
	opts = append(opts, auth...)
	tlsCfg, err := o.TLS.ClientConfig("nats")
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		opts = append(opts, nats.Secure(tlsCfg))
	}
	urls := strings.Join(o.URLs, ",")
	if urls == "" {
		urls = nats.DefaultURL
	}
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(urls, opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect to NATS at %s: %w (check --nats-url, credentials and TLS flags, and that the server is up)", redact(urls), r.err)
		}
		return r.nc, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("connect to NATS at %s: %w", redact(urls), ctx.Err())
	}
}

func (o *ConnOptions) reconnectBuffer() int {
	if o.ReconnectBuffer <= 0 {
		return DefaultReconnectBuffer
	}
	return o.ReconnectBuffer
}

func (o *ConnOptions) connectTimeout() time.Duration {
	if o.ConnectTimeout <= 0 {
		return 10 * time.Second
	}
	return o.ConnectTimeout
}

func (o *ConnOptions) authOptions() ([]nats.Option, error) {
	token, err := config.Secret(o.Token, o.TokenFile, "NATS token")
	if err != nil {
		return nil, err
	}
	if token != "" {
		return []nats.Option{nats.Token(token)}, nil
	}
	if o.User != "" {
		password, err := config.Secret(o.Password, o.PasswordFile, "NATS password")
		if err != nil {
			return nil, err
		}
		return []nats.Option{nats.UserInfo(o.User, password)}, nil
	}
	if o.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey-seed-file %s: %w", o.NKeySeedFile, err)
		}
		return []nats.Option{opt}, nil
	}
	if o.CredsFile != "" {
		return []nats.Option{nats.UserCredentials(o.CredsFile)}, nil
	}
	return nil, nil
}

// redact drops passwords and tokens from URLs for messages.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(p); err == nil && u.User != nil {
			u.User = url.User("redacted")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
