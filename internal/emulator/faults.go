package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Fault makes the next Count requests that match Method and Path prefix
// misbehave. Faults are consumed in FIFO order.
//
// A Path with a segment in braces, such as
// "/v2/gen-ai/agents/{agent_uuid}/api_keys", is a route pattern: it matches
// segment by segment, a braced segment matching any one, and like a plain
// prefix it also matches the paths below it (rename, delete and regenerate
// of any agent's keys, here). This is how a fault targets a route whose path
// holds an id the test does not know in advance.
type Fault struct {
	Method string        `json:"method"` // "" = any method
	Path   string        `json:"path"`   // URL path prefix or route pattern to match, "" = any
	Count  int           `json:"count"`  // matching requests it applies to; 0 -> 1
	Mode   string        `json:"mode"`   // "status" (default), "hang", "drop", "late" or "short"
	Status int           `json:"status"` // for mode status; default 500
	Delay  time.Duration `json:"delay"`  // extra latency before the fault acts
	// RetryAfter (seconds), with status 429, makes the answer the
	// platform's burst refusal as DigitalOcean documents it:
	// ratelimit-remaining 0 and retry-after, though the hour is not spent.
	// Without it a 429 fault keeps the request's own rate-limit headers.
	RetryAfter int `json:"retry_after"`
}

const (
	// modeStatus answers Status with the host's error body and changes nothing.
	modeStatus = "status"
	// modeHang never answers: the request blocks until the client gives up
	// (or hangTimeout, or Reset), like a platform that stopped responding.
	modeHang = "hang"
	// modeDrop applies the request's change, then closes the connection
	// without a response: the client cannot tell whether it happened. Go's
	// http.Transport silently retries a dropped GET/HEAD that went out on a
	// reused connection (as it would against the real API), so drop is meant
	// for POST, PUT and DELETE.
	modeDrop = "drop"
	// modeLate holds the request for Delay whether or not the client is
	// still waiting, then applies it and drops the connection: a change
	// the platform applies after the client gave up on it.
	modeLate = "late"
	// modeShort answers a listing as usual but without the last item of
	// its page; meta and links stay as they were. The listing then ends
	// short of meta.total, which a client must treat as an error, not as
	// a shorter list.
	modeShort = "short"

	hangTimeout = 10 * time.Minute
)

// UnmarshalJSON accepts delay as integer nanoseconds (how time.Duration
// encodes) or as a Go duration string such as "250ms", and rejects unknown
// fields.
func (f *Fault) UnmarshalJSON(data []byte) error {
	type plain Fault // no methods, so no recursion
	var aux struct {
		plain
		Delay json.RawMessage `json:"delay"`
	}
	// Strict, because a misspelt field would silently inject the wrong fault.
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&aux); err != nil {
		return err
	}
	d, err := parseDuration(aux.Delay)
	if err != nil {
		return fmt.Errorf("fault delay: %w", err)
	}
	*f = Fault(aux.plain)
	f.Delay = d
	return nil
}

// parseDuration reads a JSON duration: absent/null, integer nanoseconds or a
// Go duration string.
func parseDuration(raw json.RawMessage) (time.Duration, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return time.ParseDuration(s)
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, fmt.Errorf("want nanoseconds or a duration string like \"250ms\", got %s", raw)
	}
	return time.Duration(n), nil
}

// normalized fills in defaults and rejects faults that cannot be applied.
func (f Fault) normalized() (Fault, error) {
	f.Method = strings.ToUpper(f.Method)
	if f.Mode == "" {
		f.Mode = modeStatus
	}
	switch {
	case f.Count < 0:
		return f, fmt.Errorf("count %d is negative", f.Count)
	case f.Delay < 0:
		return f, fmt.Errorf("delay %s is negative", f.Delay)
	case !slices.Contains([]string{modeStatus, modeHang, modeDrop, modeLate, modeShort}, f.Mode):
		return f, fmt.Errorf("mode %q is not one of status, hang, drop, late, short", f.Mode)
	case f.RetryAfter < 0:
		return f, fmt.Errorf("retry_after %d is negative", f.RetryAfter)
	case f.RetryAfter > 0 && (f.Mode != modeStatus || f.Status != http.StatusTooManyRequests):
		return f, fmt.Errorf("retry_after goes with mode status and status 429 only")
	}
	if f.Count == 0 {
		f.Count = 1
	}
	if f.Mode == modeStatus {
		if f.Status == 0 {
			f.Status = http.StatusInternalServerError
		}
		if f.Status < 400 || f.Status > 599 {
			return f, fmt.Errorf("status %d is not an error status (400-599)", f.Status)
		}
	}
	return f, nil
}

func (f *Fault) matches(method, path string) bool {
	return (f.Method == "" || f.Method == method) && faultPathMatches(f.Path, path)
}

// faultPathMatches: a plain Path is a string prefix, as it always was; one
// with a braced segment is a route pattern matched segment by segment (a
// trailing slash then asks for at least one more segment).
func faultPathMatches(pattern, path string) bool {
	if !strings.Contains(pattern, "{") {
		return strings.HasPrefix(path, pattern)
	}
	below := strings.HasSuffix(pattern, "/")
	want := strings.Split(strings.Trim(pattern, "/"), "/")
	got := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(got) < len(want) || (below && len(got) == len(want)) {
		return false
	}
	_, ok := matchSegments(want, got[:len(want)])
	return ok
}

// takeFault consumes one use of the oldest fault that matches.
func (e *Emulator) takeFault(method, path string) (Fault, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, f := range e.faults {
		if !f.matches(method, path) {
			continue
		}
		f.Count--
		if f.Count == 0 {
			e.faults = slices.Delete(e.faults, i, i+1)
		}
		return *f, true
	}
	return Fault{}, false
}

// applyFault acts out f. serve runs the real handler, for modeDrop.
func (e *Emulator) applyFault(w http.ResponseWriter, r *http.Request, f Fault, serve func(http.ResponseWriter), errs errorWriter) {
	if f.Mode == modeLate {
		e.mu.Lock()
		release := e.release
		e.mu.Unlock()
		select {
		case <-time.After(f.Delay):
		case <-release:
			return // Reset: the late change never lands
		}
		serve(&discardWriter{header: http.Header{}})
		dropConnection(w)
		return
	}
	if !sleepCtx(r.Context(), f.Delay) {
		return
	}
	switch f.Mode {
	case modeHang:
		e.mu.Lock()
		release := e.release
		e.mu.Unlock()
		t := time.NewTimer(hangTimeout)
		defer t.Stop()
		select {
		case <-r.Context().Done():
		case <-release:
			errs(w, r, http.StatusServiceUnavailable, "Service Unavailable")
		case <-t.C:
			errs(w, r, http.StatusGatewayTimeout, "Gateway Timeout")
		}
	case modeDrop:
		serve(&discardWriter{header: http.Header{}})
		dropConnection(w)
	case modeShort:
		page := &bufferWriter{header: w.Header(), status: http.StatusOK}
		serve(page)
		w.WriteHeader(page.status)
		_, _ = w.Write(withoutLastItem(page.body.Bytes()))
	default:
		if f.RetryAfter > 0 {
			w.Header().Set("Ratelimit-Remaining", "0")
			w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
		}
		errs(w, r, f.Status, http.StatusText(f.Status))
	}
}

// dropConnection closes the client's connection without a response. When the
// connection cannot be hijacked (HTTP/2), aborting the handler resets the
// stream, which the client sees the same way.
func dropConnection(w http.ResponseWriter) {
	if rec, ok := w.(*recorder); ok {
		rec.dropped = true
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// discardWriter swallows the response of a request whose connection is
// about to be dropped.
type discardWriter struct {
	header http.Header
}

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// bufferWriter keeps a response in memory so a fault can change it; headers
// go straight to the real writer.
type bufferWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferWriter) Header() http.Header         { return b.header }
func (b *bufferWriter) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bufferWriter) WriteHeader(status int)      { b.status = status }

// withoutLastItem drops the last element of every array at the top of a
// JSON object (a listing has one: api_key_infos or agents). Anything else,
// an error body say, passes unchanged.
func withoutLastItem(body []byte) []byte {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return body
	}
	for name, raw := range obj {
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil || len(items) == 0 {
			continue
		}
		shorter, err := json.Marshal(items[:len(items)-1])
		if err != nil {
			return body
		}
		obj[name] = shorter
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return body
	}
	return append(out, '\n')
}
