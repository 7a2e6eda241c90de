package providers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform/platformtest"
)

// The verifier follows no redirect: x-api-key (which Go forwards to any
// host) and OpenAI's bearer key never reach the Location, and the error says
// why without showing where it pointed.
func TestVerify_RefusesRedirects(t *testing.T) {
	keys := map[string]string{platform.Anthropic: "sk-ant-api03-verifyredirect-0123456789abcdef", platform.OpenAI: "sk-proj-verifyredirect-0123456789abcdef"}
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect} {
		for provider, key := range keys {
			t.Run(fmt.Sprintf("%s/%d", provider, status), func(t *testing.T) {
				url, hits := platformtest.NewRedirectPair(t, status)
				v := NewVerifier(Config{AnthropicURL: url, OpenAIURL: url, Timeout: 5 * time.Second, RetryBase: testRetryBase})
				err := v.Verify(context.Background(), provider, key)
				if n := hits.Load(); n != 0 {
					t.Fatalf("the redirect target received %d requests", n)
				}
				if err == nil {
					t.Fatal("want an error")
				}
				want := "the " + provider + " API key could not be verified: the provider " + fmt.Sprintf(platformtest.RedirectRefusal, status)
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
				if errors.Is(err, platform.ErrRefused) {
					t.Errorf("a redirect is not the caller's fault: %v", err)
				}
				for _, leak := range []string{platformtest.LocationMarker, "127.0.0.1", key} {
					if strings.Contains(err.Error(), leak) {
						t.Errorf("error shows %q: %v", leak, err)
					}
				}
			})
		}
	}
}
