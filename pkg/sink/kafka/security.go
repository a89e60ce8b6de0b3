package kafka

import (
	"errors"
	"fmt"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/kubestream/kubestream/pkg/config"
)

// mechanism builds the SASL mechanism, nil when SASL is off.
func (s SASLOptions) mechanism() (sasl.Mechanism, error) {
	mech := strings.ToLower(s.Mechanism)
	if mech == "" {
		return nil, nil
	}
	password, err := config.Secret(s.Password, s.PasswordFile, "SASL password")
	if err != nil {
		return nil, err
	}
	if password == "" {
		return nil, fmt.Errorf("the SASL password is empty: check KUBESTREAM_KAFKA_SASL_PASSWORD or --kafka-sasl-password-file")
	}
	switch mech {
	case "plain":
		return plain.Mechanism{Username: s.Username, Password: password}, nil
	case "scram-sha-256":
		return scramMechanism(scram.SHA256, s.Username, password)
	case "scram-sha-512":
		return scramMechanism(scram.SHA512, s.Username, password)
	}
	return nil, fmt.Errorf("--kafka-sasl-mechanism %q is unknown: use one of %s", s.Mechanism, strings.Join(saslMechanisms, ", "))
}

func scramMechanism(algo scram.Algorithm, user, password string) (sasl.Mechanism, error) {
	m, err := scram.Mechanism(algo, user, password)
	if err != nil {
		return nil, fmt.Errorf("set up SASL %s: %w", algo.Name(), err)
	}
	return m, nil
}

func parseCompression(s string) (kafkago.Compression, error) {
	switch strings.ToLower(s) {
	case "none", "":
		return 0, nil
	case "gzip":
		return kafkago.Gzip, nil
	case "snappy":
		return kafkago.Snappy, nil
	case "lz4":
		return kafkago.Lz4, nil
	case "zstd":
		return kafkago.Zstd, nil
	}
	return 0, fmt.Errorf("--kafka-compression %q is unknown: use one of %s", s, strings.Join(compressions, ", "))
}

// NewDialer returns a kafka-go Dialer with TLS and SASL as configured, for
// the consumers (tail, alert-bridge) that read what the sink wrote.
func NewDialer(timeout time.Duration, t TLSOptions, s SASLOptions) (*kafkago.Dialer, error) {
	if errs := ValidateSecurity(t, s); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	tlsCfg, err := t.ClientConfig("kafka")
	if err != nil {
		return nil, err
	}
	mech, err := s.mechanism()
	if err != nil {
		return nil, err
	}
	return &kafkago.Dialer{Timeout: timeout, DualStack: true, TLS: tlsCfg, SASLMechanism: mech, ClientID: "kubestream"}, nil
}
