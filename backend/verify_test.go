package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The verifier follows no redirect: x-api-key (which Go forwards to any
// host) and OpenAI's bearer key never reach the Location, and the error says
// why without showing where it pointed.
func TestVerify_RefusesRedirects(t *testing.T) {
	keys := map[string]string{providerAnthropic: anthropicKey("verifyredirect"), providerOpenAI: openAIKey("verifyredirect")}
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect} {
		for provider, key := range keys {
			t.Run(fmt.Sprintf("%s/%d", provider, status), func(t *testing.T) {
				url, hits := newRedirectPair(t, status)
				v := newHTTPVerifier(url, url, 5*time.Second, testRetryBase)
				err := v.Verify(context.Background(), provider, key)
				if n := hits.Load(); n != 0 {
					t.Fatalf("the redirect target received %d requests", n)
				}
				if err == nil {
					t.Fatal("want an error")
				}
				want := "the " + provider + " API key could not be verified: the provider " + fmt.Sprintf(redirectRefusal, status)
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
				var ce *callerError
				if errors.As(err, &ce) {
					t.Errorf("a redirect is not the caller's fault: %v", err)
				}
				for _, leak := range []string{locationMarker, "127.0.0.1", key} {
					if strings.Contains(err.Error(), leak) {
						t.Errorf("error shows %q: %v", leak, err)
					}
				}
			})
		}
	}
}
