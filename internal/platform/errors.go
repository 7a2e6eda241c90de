package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/vault/sdk/logical"
)

var (
	// errNotConfigured: the mount has no config yet. respond turns it into
	// a 400 that names the mount's config path.
	errNotConfigured = errors.New("this mount is not configured")
	// errPlatformNotFound: the platform answered 404 for the object.
	errPlatformNotFound = errors.New("not found on the platform")
	// errPlatformUnauthorized: the platform rejected the configured token.
	errPlatformUnauthorized = errors.New("the platform rejected the configured token (HTTP 401): write a valid token to config")
)

// callerError is a mistake the caller can fix; handlers answer it with a 400
// carrying exactly this text, which must already be free of secrets.
type callerError struct{ msg string }

func (e *callerError) Error() string { return e.msg }

func callerErrorf(format string, args ...any) error {
	return &callerError{msg: fmt.Sprintf(format, args...)}
}

// keyGoneIfNotFound turns the platform's 404 for a managed key into the
// caller's answer: the key was deleted outside Vault, and this is how to
// recover. Other errors pass unchanged.
func keyGoneIfNotFound(err error, k *keyEntry) error {
	if errors.Is(err, errPlatformNotFound) {
		return callerErrorf("platform key %s behind %q no longer exists (deleted outside Vault?): run a sync (sync on the mount) and repair it with keys/%s/sync, which re-creates it with Vault's secret, or delete %q in Vault and write it again", k.UUID, k.Name, k.Name, k.Name)
	}
	return err
}

// platformError is an upstream fault: a 5xx, an unexpected status, or a
// transport failure. Its text is redacted and carries the request id, which
// is what DigitalOcean support asks for.
type platformError struct {
	op        string
	status    int
	requestID string
	message   string
}

func (e *platformError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "platform %s failed", e.op)
	if e.status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.status)
	}
	if e.message != "" {
		b.WriteString(": " + e.message)
	}
	if e.requestID != "" {
		b.WriteString(" [request id " + e.requestID + "]")
	}
	return b.String()
}

// classifyPlatformError turns a godo error into one of: errPlatformNotFound,
// errPlatformUnauthorized, logical.ErrUpstreamRateLimited, a callerError (any
// other 4xx: the platform's validation message is shown, redacted) or a
// platformError. Secrets sent with the request are removed from any text.
func classifyPlatformError(op string, resp *godo.Response, err error, secrets ...string) error {
	// An earlier attempt may have been applied: classify the last answer
	// and keep saying so.
	var pa *possiblyApplied
	if errors.As(err, &pa) {
		return &possiblyApplied{err: classifyPlatformError(op, resp, pa.err, secrets...)}
	}
	// Not err.Error(): the *url.Error around a refused redirect names the
	// Location.
	var redirect *redirectError
	if errors.As(err, &redirect) {
		return &platformError{op: op, message: redirect.Error()}
	}
	// The mount's own budget refused to wait past the deadline: say so,
	// without the URL that net/http wraps around it.
	if errors.Is(err, logical.ErrUpstreamRateLimited) {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("platform %s: %w", op, err)
	}
	if isTimeout(err) {
		return &platformError{op: op, message: "timed out waiting for the platform (request_timeout on config); the change may or may not have been applied"}
	}
	var apiErr *godo.ErrorResponse
	if !errors.As(err, &apiErr) || apiErr.Response == nil {
		// Transport failures: timeouts, refused connections, dropped
		// connections. The request may or may not have been applied.
		return &platformError{op: op, message: redact(err.Error(), secrets...)}
	}
	status := apiErr.Response.StatusCode
	msg := redact(apiErr.Message, secrets...)
	switch {
	case status == http.StatusNotFound:
		return fmt.Errorf("platform %s: %w", op, errPlatformNotFound)
	case status == http.StatusUnauthorized:
		return errPlatformUnauthorized
	case status == http.StatusTooManyRequests:
		retry := ""
		if v := apiErr.Response.Header.Get("Retry-After"); v != "" {
			retry = "; retry after " + redact(v, secrets...) + " s"
		}
		return fmt.Errorf("platform %s: the platform's rate limit was reached%s: %w", op, retry, logical.ErrUpstreamRateLimited)
	case status >= 400 && status < 500:
		// Which status the platform uses for validation failures is not
		// documented: every other 4xx is the caller's to fix.
		if msg == "" {
			msg = http.StatusText(status)
		}
		return callerErrorf("the platform refused to %s (HTTP %d): %s", op, status, msg)
	}
	return &platformError{op: op, status: status, requestID: redact(apiErr.RequestID, secrets...), message: msg}
}

func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout())
}

// keyLike matches anything shaped like a provider key or a masked fragment of
// one, such as OpenAI's "sk-proj-*****abcd" echo in its 401 message, and
// every shape of DigitalOcean token: personal (dop_v1_), OAuth (doo_v1_)
// and refresh (dor_v1_), with room for prefixes DigitalOcean adds later.
var keyLike = regexp.MustCompile(`(?i)(sk|do[a-z]_v1)[-_][A-Za-z0-9_*.\-]*`)

// maxUpstreamText bounds how much upstream text reaches a response.
const maxUpstreamText = 300

// redact removes every given secret and anything shaped like a key from
// upstream text, and bounds its length. It is applied to every message the
// platform or a provider sends back before it reaches a log or a response.
func redact(text string, secrets ...string) string {
	for _, s := range secrets {
		if s != "" {
			text = strings.ReplaceAll(text, s, "[redacted]")
		}
	}
	text = keyLike.ReplaceAllString(text, "[redacted]")
	text = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, text)
	if len(text) > maxUpstreamText {
		text = text[:maxUpstreamText] + "..."
	}
	return text
}

// platformRefused reports a definite refusal: the platform answered and
// changed nothing.
func platformRefused(err error) bool {
	var pa *possiblyApplied
	if errors.As(err, &pa) {
		return false
	}
	var ce *callerError
	return errors.As(err, &ce) || errors.Is(err, errPlatformNotFound) ||
		errors.Is(err, errPlatformUnauthorized) || errors.Is(err, logical.ErrUpstreamRateLimited)
}
