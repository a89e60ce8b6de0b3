package alertbridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// ErrRejected marks a request Alertmanager refused as malformed (400, 422):
// sending it again cannot succeed.
var ErrRejected = errors.New("alertmanager rejected the alerts")

// Client posts alerts to one or more Alertmanagers.
type Client struct {
	// URLs are Alertmanager base URLs ("http://alertmanager:9093"); the
	// path /api/v2/alerts is appended. Alertmanagers of one HA cluster do
	// not share alerts, so every one of them is sent every alert.
	URLs []string
	// BearerToken, when set, is sent as "Authorization: Bearer <token>".
	BearerToken string
	HTTP        *http.Client
}

// Post sends alerts to every Alertmanager. It succeeds when at least one
// accepted them, as Prometheus does: a member of an HA pair that is down
// catches up from the periodic re-sends of firing alerts. It fails with
// ErrRejected when every Alertmanager that answered refused the payload as
// malformed.
func (c *Client) Post(ctx context.Context, alerts []Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	body, err := json.Marshal(alerts)
	if err != nil {
		return fmt.Errorf("encode alerts: %w", fmt.Errorf("%w: %w", ErrRejected, err))
	}
	var errs []error
	rejected := 0
	for _, base := range c.URLs {
		err := c.post(ctx, base, body)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrRejected) {
			rejected++
		}
		errs = append(errs, err)
	}
	err = errors.Join(errs...)
	if rejected == len(c.URLs) {
		return err
	}
	if rejected > 0 {
		// Some refused, some were unreachable: retry, the unreachable ones
		// may accept.
		return fmt.Errorf("no Alertmanager accepted the alerts: %s", strings.ReplaceAll(err.Error(), ErrRejected.Error(), "rejected"))
	}
	return err
}

func (c *Client) post(ctx context.Context, base string, body []byte) error {
	url := strings.TrimRight(base, "/") + "/api/v2/alerts"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("post alerts to %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "kubestream-alert-bridge")
	if c.BearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.BearerToken)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("post alerts to %s: %w", url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity:
		return fmt.Errorf("post alerts to %s: %w: %s: %s", url, ErrRejected, resp.Status, strings.TrimSpace(string(msg)))
	default:
		// 5xx, 429, and also 401/403/404: a wrong token or URL is fixed by
		// the operator, and until then the message stays unacknowledged.
		return fmt.Errorf("post alerts to %s: %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
	}
}
