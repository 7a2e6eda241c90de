package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// keyVerifier asks a provider whether an API key works, before the key is
// pushed anywhere.
type keyVerifier interface {
	Verify(ctx context.Context, provider, apiKey string) error
}

// anthropicVersion is the API version header Anthropic requires.
const anthropicVersion = "2023-06-01"

// httpVerifier verifies keys with the cheapest authenticated call each
// provider offers: listing models.
type httpVerifier struct {
	client       *http.Client
	anthropicURL string
	openaiURL    string
	retryBase    time.Duration // the first backoff of a retried call
}

func newHTTPVerifier(anthropicURL, openaiURL string, timeout, retryBase time.Duration) *httpVerifier {
	return &httpVerifier{
		client: &http.Client{
			Timeout: timeout,
			// Its own transport, not http.DefaultTransport: closing the idle
			// connections of a replaced verifier must not close other users'.
			Transport:     upstreamTransport(),
			CheckRedirect: refuseRedirects("the provider"),
		},
		anthropicURL: strings.TrimRight(anthropicURL, "/"),
		openaiURL:    strings.TrimRight(openaiURL, "/"),
		retryBase:    retryBase,
	}
}

// CloseIdleConnections closes the client's idle keep-alive connections; see
// clients.closeIdleConnections.
func (v *httpVerifier) CloseIdleConnections() { v.client.CloseIdleConnections() }

// Verify asks the provider whether apiKey works. A 429 or a 5xx is asked
// again with backoff (retry.go), within request_timeout; a 401 or 403 is
// final.
func (v *httpVerifier) Verify(ctx context.Context, provider, apiKey string) error {
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
			return callerErrorf("the %s API key was rejected by the provider (HTTP %d): check that it is an active model key and that it was copied whole", provider, resp.StatusCode)
		case transientStatus(resp.StatusCode) && attempt+1 < maxAttempts && sleepWithin(ctx, retryAfter(v.retryBase, attempt, resp, time.Now())):
			continue
		}
		return fmt.Errorf("the %s API key could not be verified: the provider answered HTTP %d; try again later, or set verify_keys=false on the config to skip verification", provider, resp.StatusCode)
	}
}

// verifyOnce makes one key check. The body is drained and discarded unread:
// provider error text can echo fragments of the key.
func (v *httpVerifier) verifyOnce(ctx context.Context, provider, apiKey string) (*http.Response, error) {
	var req *http.Request
	var err error
	switch provider {
	case providerAnthropic:
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, v.anthropicURL+"/v1/models?limit=1", nil)
		if err == nil {
			req.Header.Set("x-api-key", apiKey)
			req.Header.Set("anthropic-version", anthropicVersion)
		}
	case providerOpenAI:
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, v.openaiURL+"/v1/models", nil)
		if err == nil {
			req.Header.Set("Authorization", "Bearer "+apiKey)
		}
	default:
		return nil, unknownProvider(provider)
	}
	if err != nil {
		return nil, fmt.Errorf("building the %s verification request: %w", provider, err)
	}

	resp, err := v.client.Do(req)
	// Not err.Error(): the *url.Error around a refused redirect names the
	// Location.
	var redirect *redirectError
	if errors.As(err, &redirect) {
		return nil, fmt.Errorf("the %s API key could not be verified: %w", provider, redirect)
	}
	if isTimeout(err) {
		return nil, fmt.Errorf("the %s API key could not be verified: %s did not answer within request_timeout", provider, provider)
	}
	if err != nil {
		return nil, fmt.Errorf("the %s API key could not be verified: %s is unreachable: %s", provider, provider, redact(err.Error(), apiKey))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	return resp, nil
}
