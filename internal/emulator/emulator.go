package emulator

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Config is fixed for the life of an Emulator; Reset returns to it.
type Config struct {
	Tokens         []string                         // bearer tokens the platform accepts; empty -> []string{"emulator-token"}
	PerMinuteLimit int                              // default 250 (0 -> default)
	PerHourLimit   int                              // default 5000 (0 -> default)
	Logf           func(format string, args ...any) // optional request log; never given secrets
}

const (
	defaultToken     = "emulator-token"
	defaultPerMinute = 250
	defaultPerHour   = 5000

	headerRequestID = "X-Request-Id"
	controlPrefix   = "/_emulator/"
)

// Emulator serves the platform, both providers and the control API. The zero
// value is not usable; call New.
type Emulator struct {
	cfg    Config
	routes *router // built once in New, read-only afterwards

	// mu guards everything below. Handlers hold it only while they read or
	// change state, never while sleeping or writing to the network.
	mu      sync.Mutex
	tokens  map[string]bool
	limits  limits
	windows rateWindows
	keys    map[string][]*apiKey // by provider name, in creation order
	agents  []*agent             // in creation order
	revoked map[string]bool      // secrets the providers now reject
	faults  []*Fault             // FIFO; entries leave when their count is used up
	latency time.Duration
	counts  map[string]int
	// statuses counts the platform's answers by HTTP status (0: none,
	// the connection was dropped or the client left).
	statuses map[int]int
	release  chan struct{} // closed by Reset so hung requests return
	// clockSkew is how far the platform's clock runs ahead of this
	// machine's (negative: behind). Timestamps and the Date header follow
	// it, as they would on a platform whose clock is not the client's.
	clockSkew time.Duration
	// adminKeys are the keys each provider's Admin API accepts, by
	// provider name; like tokens, they outlive Reset.
	adminKeys map[string]map[string]bool
	// org is what the providers' Admin APIs manage (internal/providers/provider_admin.go).
	org orgState
	// activity is the request log and secret-change counts (requestlog.go).
	activity activity
	// omitSinglePageLinks leaves "links" out of a listing that fits on one
	// page (OmitSinglePageLinks).
	omitSinglePageLinks bool
}

// New returns an emulator with empty state.
func New(cfg Config) *Emulator {
	if len(cfg.Tokens) == 0 {
		cfg.Tokens = []string{defaultToken}
	}
	if cfg.PerMinuteLimit <= 0 {
		cfg.PerMinuteLimit = defaultPerMinute
	}
	if cfg.PerHourLimit <= 0 {
		cfg.PerHourLimit = defaultPerHour
	}
	cfg.Tokens = append([]string(nil), cfg.Tokens...)
	e := &Emulator{cfg: cfg, tokens: map[string]bool{}, adminKeys: map[string]map[string]bool{}}
	for _, t := range cfg.Tokens {
		e.tokens[t] = true
	}
	e.routes = e.buildRoutes()
	e.resetLocked()
	return e
}

// resetLocked empties all state and run-time settings. Tokens and admin keys
// are left alone: they are credentials a harness sets up once, not per-test
// state.
func (e *Emulator) resetLocked() {
	e.limits = limits{perMinute: e.cfg.PerMinuteLimit, perHour: e.cfg.PerHourLimit}
	e.windows = rateWindows{}
	e.keys = map[string][]*apiKey{}
	e.agents = nil
	e.revoked = map[string]bool{}
	e.faults = nil
	e.latency = 0
	e.clockSkew = 0
	e.omitSinglePageLinks = false
	e.org = newOrgState()
	e.counts = map[string]int{}
	e.statuses = map[int]int{}
	e.activity = newActivity()
	if e.release != nil {
		close(e.release)
	}
	e.release = make(chan struct{})
}

// ServeHTTP routes by path prefix to the control API, a provider, an agent
// endpoint or the platform.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, controlPrefix) {
		e.serveControl(w, r)
		return
	}
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	seq := e.beginRequest(r)
	defer e.endRequest(seq, rec)
	switch {
	case underPrefix(r.URL.Path, anthropicPrefix):
		e.serveProvider(rec, r, anthropicHost)
	case underPrefix(r.URL.Path, openAIPrefix):
		e.serveProvider(rec, r, openAIHost)
	case underPrefix(r.URL.Path, agentEndpointPrefix):
		e.serveAgentEndpoint(rec, r)
	default:
		e.servePlatform(rec, r)
		e.mu.Lock()
		e.statuses[rec.status]++
		e.mu.Unlock()
	}
	e.logRequest(r, rec, time.Since(start))
}

// servePlatform is the platform pipeline: count, latency, authenticate,
// rate-limit, then faults and routing.
func (e *Emulator) servePlatform(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(headerRequestID, newUUID())
	// net/http would stamp its own clock; the platform's is the one that
	// matters to a client comparing it with created_at.
	w.Header().Set("Date", e.now().Format(http.TimeFormat))
	m := e.routes.match(r.Method, r.URL.Path)
	e.count(m)
	if !bufferBody(w, r, platformErrors) || !sleepCtx(r.Context(), e.currentLatency()) {
		return
	}
	token, ok := bearerToken(r)
	e.mu.Lock()
	ok = ok && e.tokens[token]
	e.mu.Unlock()
	if !ok {
		e.refuseToken(w, token)
		return
	}
	if !e.admit(w, token) {
		return
	}
	e.dispatch(w, r, m, platformErrors)
}

// serveProvider is the pipeline of a provider host: no token and no rate
// limit (the plugin only makes cheap key checks), but counts, latency and
// faults apply so tests can make a provider slow or broken.
func (e *Emulator) serveProvider(w http.ResponseWriter, r *http.Request, h providerHost) {
	w.Header().Set(h.requestIDHeader, newRequestID())
	m := e.routes.match(r.Method, r.URL.Path)
	e.count(m)
	if !bufferBody(w, r, h.errors) || !sleepCtx(r.Context(), e.currentLatency()) {
		return
	}
	e.dispatch(w, r, m, h.errors)
}

// dispatch applies the first matching fault, if any, and otherwise routes.
func (e *Emulator) dispatch(w http.ResponseWriter, r *http.Request, m routeMatch, errs errorWriter) {
	if f, ok := e.takeFault(r.Method, r.URL.Path); ok {
		e.applyFault(w, r, f, func(w http.ResponseWriter) { e.route(w, r, m, errs) }, errs)
		return
	}
	e.route(w, r, m, errs)
}

func (e *Emulator) route(w http.ResponseWriter, r *http.Request, m routeMatch, errs errorWriter) {
	switch {
	case m.route != nil:
		for _, p := range m.params {
			r.SetPathValue(p.name, p.value)
		}
		m.route.handle(w, r, m.id)
	case len(m.allow) > 0:
		w.Header().Set("Allow", strings.Join(m.allow, ", "))
		errs(w, r, http.StatusMethodNotAllowed, "Method Not Allowed")
	default:
		errs(w, r, http.StatusNotFound, msgNotFound)
	}
}

func (e *Emulator) count(m routeMatch) {
	if m.route == nil {
		return
	}
	e.mu.Lock()
	e.counts[m.route.key()]++
	e.mu.Unlock()
}

func (e *Emulator) currentLatency() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.latency
}

// nowLocked is the platform's clock for timestamps. Stored times are UTC
// without a monotonic reading so they compare and print like the ones on the
// wire.
func (e *Emulator) nowLocked() time.Time { return time.Now().UTC().Round(0).Add(e.clockSkew) }

func (e *Emulator) now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nowLocked()
}

// stampAfterLocked returns the current time, nudged past prev so updated_at
// always moves when something changes, even on a coarse clock.
func (e *Emulator) stampAfterLocked(prev time.Time) time.Time {
	t := e.nowLocked()
	if !t.After(prev) {
		t = prev.Add(time.Nanosecond)
	}
	return t
}

// bufferBody reads the request body into memory before anything waits.
// net/http notices a client that went away (and cancels the request context)
// only once the body has been read, and latency, fault delays and hangs all
// rely on that notice.
func bufferBody(w http.ResponseWriter, r *http.Request, errs errorWriter) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		errs(w, r, http.StatusRequestEntityTooLarge, "request body too large or unreadable")
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return true
}

// sleepCtx waits d and reports false when the client went away first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// underPrefix reports whether path is prefix itself or below it, so that
// "/openaix" does not count as the OpenAI host.
func underPrefix(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// recorder remembers the status for the request log. Unwrap lets
// http.ResponseController reach the real writer to hijack it.
type recorder struct {
	http.ResponseWriter
	status  int
	dropped bool
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRequest logs method, path, outcome and request id: never headers, query
// strings or bodies, which is where secrets travel.
func (e *Emulator) logRequest(r *http.Request, rec *recorder, d time.Duration) {
	if e.cfg.Logf == nil {
		return
	}
	outcome := "client gone"
	switch {
	case rec.dropped:
		outcome = "dropped"
	case rec.status != 0:
		outcome = http.StatusText(rec.status)
		if outcome == "" {
			outcome = "status"
		}
		outcome = strings.ToLower(outcome)
	}
	id := rec.Header().Get(headerRequestID)
	if id == "" {
		id = rec.Header().Get(anthropicHost.requestIDHeader)
	}
	e.cfg.Logf("%s %s -> %d %s (%s) request_id=%s", r.Method, r.URL.Path, rec.status, outcome, d.Round(time.Microsecond), id)
}
