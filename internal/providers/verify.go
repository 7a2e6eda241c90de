package providers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Verifier asks a provider whether an API key works, before the key is
// pushed anywhere. A key the provider rejects is a platform.Refused error.
type Verifier interface {
	Verify(ctx context.Context, provider, apiKey string) error
}

// HTTPVerifier implements Verifier: it verifies keys with the cheapest authenticated call each
// provider offers: listing models.
type HTTPVerifier struct {
	client    *http.Client
	endpoints map[string]endpoint
	retryBase time.Duration // the first backoff of a retried call
}

// NewVerifier builds the verifier of one configuration.
func NewVerifier(c Config) *HTTPVerifier {
	return &HTTPVerifier{client: newHTTPClient(c, "the provider"), endpoints: c.endpoints(), retryBase: c.RetryBase}
}

// CloseIdleConnections closes the client's idle keep-alive connections; the
// backend calls it when it replaces the clients.
func (v *HTTPVerifier) CloseIdleConnections() { v.client.CloseIdleConnections() }

// Verify asks the provider whether apiKey works. A 429 or a 5xx is asked
// again with backoff (the platform package's retry policy), within
// request_timeout; a 401 or 403 is final.
func (v *HTTPVerifier) Verify(ctx context.Context, provider, apiKey string) error {
	ctx, cancel := context.WithTimeout(ctx, v.client.Timeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		resp, err := v.verifyOnce(ctx, provider, apiKey)
		if err != nil {
			return err
		}
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return nil
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			return platform.Refusedf("the %s API key was rejected by the provider (HTTP %d): check that it is an active model key and that it was copied whole", provider, resp.StatusCode)
		case platform.TransientStatus(resp.StatusCode) && attempt+1 < platform.MaxAttempts && platform.SleepWithin(ctx, platform.RetryAfter(v.retryBase, attempt, resp, time.Now())):
			continue
		}
		return fmt.Errorf("the %s API key could not be verified: the provider answered HTTP %d; try again later, or set verify_keys=false on the config to skip verification", provider, resp.StatusCode)
	}
}

// verifyOnce makes one key check. The body is drained and discarded unread:
// provider error text can echo fragments of the key.
func (v *HTTPVerifier) verifyOnce(ctx context.Context, provider, apiKey string) (*http.Response, error) {
	e, ok := v.endpoints[provider]
	if !ok {
		return nil, platform.UnknownProvider(provider)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.baseURL+e.verifyPath, nil)
	if err != nil {
		return nil, fmt.Errorf("building the %s verification request: %w", provider, err)
	}
	e.auth(req.Header, apiKey)

	resp, err := v.client.Do(req)
	// Not err.Error(): the *url.Error around a refused redirect names the
	// Location.
	var redirect *platform.RedirectError
	if errors.As(err, &redirect) {
		return nil, fmt.Errorf("the %s API key could not be verified: %w", provider, redirect)
	}
	if platform.IsTimeout(err) {
		return nil, fmt.Errorf("the %s API key could not be verified: %s did not answer within request_timeout", provider, provider)
	}
	if err != nil {
		return nil, fmt.Errorf("the %s API key could not be verified: %s is unreachable: %s", provider, provider, platform.Redact(err.Error(), apiKey))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	return resp, nil
}
