package platform

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
)

// Kind says what an upstream answer means to the caller. The backend maps
// kinds to its own answers (a 400, Vault's rate-limit sentinel) in one place;
// the code in between asks errors.Is(err, ErrNotFound) and the like.
type Kind string

const (
	// Failed: a 5xx, an unexpected status, or a transport failure. The
	// request may or may not have been applied.
	Failed Kind = "failed"
	// Refused: any other 4xx. The platform changed nothing, and its
	// (redacted) validation message says what the caller can fix.
	Refused Kind = "refused"
	// NotFound: the platform answered 404 for the object.
	NotFound Kind = "not found"
	// RateLimited: the platform answered 429, or the mount's own budget had
	// no room within the timeout. Nothing was sent, or nothing changed.
	RateLimited Kind = "rate limited"
	// Unauthorized: the platform rejected the configured token.
	Unauthorized Kind = "unauthorized"
)

// Error is a classified platform answer. Its text is redacted and, for a
// fault, carries the request id, which is what DigitalOcean support asks
// for.
type Error struct {
	Kind      Kind
	Op        string
	Status    int
	RequestID string
	msg       string
}

func (e *Error) Error() string { return e.msg }

// Is matches the sentinel of e's kind (ErrNotFound, ErrUnauthorized,
// ErrRateLimited, ErrRefused), so errors.Is reads the same as it did with
// plain sentinels.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Op == "" && t.Kind == e.Kind
}

// The sentinels of the kinds: errors.Is(err, ErrNotFound) is true of every
// NotFound answer.
var (
	ErrNotFound     = &Error{Kind: NotFound, msg: "not found on the platform"}
	ErrUnauthorized = &Error{Kind: Unauthorized, msg: "the platform rejected the configured token (HTTP 401): write a valid token to config"}
	ErrRateLimited  = &Error{Kind: RateLimited, msg: "upstream rate limited"}
	ErrRefused      = &Error{Kind: Refused, msg: "refused by the upstream"}
)

// Refusedf is a Refused error with the given text, which must already be free
// of secrets: the upstream answered and changed nothing, and the caller can
// fix what the text names. The providers package answers with it too.
func Refusedf(format string, args ...any) error {
	return &Error{Kind: Refused, msg: fmt.Sprintf(format, args...)}
}

// failure is an upstream fault: a 5xx, an unexpected status, or a transport
// failure.
func failure(op string, status int, requestID, message string) *Error {
	var b strings.Builder
	fmt.Fprintf(&b, "platform %s failed", op)
	if status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", status)
	}
	if message != "" {
		b.WriteString(": " + message)
	}
	if requestID != "" {
		b.WriteString(" [request id " + requestID + "]")
	}
	return &Error{Kind: Failed, Op: op, Status: status, RequestID: requestID, msg: b.String()}
}

// classify turns a godo error into an *Error of one of the kinds: NotFound,
// Unauthorized, RateLimited, Refused (any other 4xx: the platform's
// validation message is shown, redacted) or Failed. Secrets sent with the
// request are removed from any text.
func classify(op string, resp *godo.Response, err error, secrets ...string) error {
	// An earlier attempt may have been applied: classify the last answer
	// and keep saying so.
	var pa *possiblyApplied
	if errors.As(err, &pa) {
		return &possiblyApplied{err: classify(op, resp, pa.err, secrets...)}
	}
	// Not err.Error(): the *url.Error around a refused redirect names the
	// Location.
	var redirect *RedirectError
	if errors.As(err, &redirect) {
		return failure(op, 0, "", redirect.Error())
	}
	// The mount's own budget refused to wait past the deadline: say so,
	// without the URL that net/http wraps around it.
	if errors.Is(err, ErrRateLimited) {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &Error{Kind: RateLimited, Op: op, msg: fmt.Sprintf("platform %s: %s", op, err)}
	}
	if IsTimeout(err) {
		return failure(op, 0, "", "timed out waiting for the platform (request_timeout on config); the change may or may not have been applied")
	}
	var apiErr *godo.ErrorResponse
	if !errors.As(err, &apiErr) || apiErr.Response == nil {
		// Transport failures: timeouts, refused connections, dropped
		// connections. The request may or may not have been applied.
		return failure(op, 0, "", Redact(err.Error(), secrets...))
	}
	status := apiErr.Response.StatusCode
	msg := Redact(apiErr.Message, secrets...)
	switch {
	case status == http.StatusNotFound:
		return &Error{Kind: NotFound, Op: op, Status: status, msg: fmt.Sprintf("platform %s: %s", op, ErrNotFound)}
	case status == http.StatusUnauthorized:
		return &Error{Kind: Unauthorized, Op: op, Status: status, msg: ErrUnauthorized.msg}
	case status == http.StatusTooManyRequests:
		retry := ""
		if v := apiErr.Response.Header.Get("Retry-After"); v != "" {
			retry = "; retry after " + Redact(v, secrets...) + " s"
		}
		return &Error{Kind: RateLimited, Op: op, Status: status, msg: fmt.Sprintf("platform %s: the platform's rate limit was reached%s: %s", op, retry, ErrRateLimited)}
	case status >= 400 && status < 500:
		// Which status the platform uses for validation failures is not
		// documented: every other 4xx is the caller's to fix.
		if msg == "" {
			msg = http.StatusText(status)
		}
		return &Error{Kind: Refused, Op: op, Status: status, msg: fmt.Sprintf("the platform refused to %s (HTTP %d): %s", op, status, msg)}
	}
	return failure(op, status, Redact(apiErr.RequestID, secrets...), msg)
}

// IsTimeout reports a deadline that passed or a network timeout.
func IsTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout())
}

// keyLike matches anything shaped like a provider key or a masked fragment of
// one, such as OpenAI's "sk-proj-*****abcd" echo in its 401 message, and
// every shape of DigitalOcean token: personal (dop_v1_), OAuth (doo_v1_)
// and refresh (dor_v1_), with room for prefixes DigitalOcean adds later.
var keyLike = regexp.MustCompile(`(?i)(sk|do[a-z]_v1)[-_][A-Za-z0-9_*.\-]*`)

// secretKeyField matches a secret_key field and its value, in JSON (quoted
// or escaped) or in key=value text. An agent API key's secret is an
// alphanumeric string with no prefix, so unlike a provider key it has no
// shape to be found by: an upstream text that quotes an answer is caught by
// the field's name.
var secretKeyField = regexp.MustCompile(`(?i)(secret_?key\\?"?\s*[:=]\s*\\?"?)[^"\\\s,;&}]+`)

// maxUpstreamText bounds how much upstream text reaches a response.
const maxUpstreamText = 300

// LooksLikeKey reports text shaped like a provider key or a DigitalOcean
// token somewhere in it.
func LooksLikeKey(text string) bool { return keyLike.MatchString(text) }

// Redact removes every given secret and anything shaped like a key from
// upstream text, and bounds its length. It is applied to every message the
// platform or a provider sends back before it reaches a log or a response.
func Redact(text string, secrets ...string) string {
	for _, s := range secrets {
		if s != "" {
			text = strings.ReplaceAll(text, s, "[redacted]")
		}
	}
	text = keyLike.ReplaceAllString(text, "[redacted]")
	text = secretKeyField.ReplaceAllString(text, "${1}[redacted]")
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

// IsRefusal reports a definite refusal: the platform answered and changed
// nothing.
func IsRefusal(err error) bool {
	var pa *possiblyApplied
	if errors.As(err, &pa) {
		return false
	}
	var e *Error
	return errors.As(err, &e) && e.Kind != Failed
}
