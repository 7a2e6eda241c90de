package emulator

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"
)

// State is a snapshot of what the platform holds, for assertions in tests.
type State struct {
	AnthropicKeys []KeyState   `json:"anthropic_keys"` // in creation order
	OpenAIKeys    []KeyState   `json:"openai_keys"`
	Agents        []AgentState `json:"agents"`
	Revoked       int          `json:"revoked_count"` // revoked secrets themselves are never exposed
}

// KeyState is one stored provider key. Secret is the provider key the
// platform holds; only the control API shows it.
type KeyState struct {
	UUID      string    `json:"uuid"`
	Name      string    `json:"name"`
	Secret    string    `json:"secret"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// AgentState is one agent; a key uuid is empty when the agent has no key of
// that provider.
type AgentState struct {
	UUID             string `json:"uuid"`
	Name             string `json:"name"`
	AnthropicKeyUUID string `json:"anthropic_key_uuid"`
	OpenAIKeyUUID    string `json:"openai_key_uuid"`
	Instruction      string `json:"instruction"`
	ModelUUID        string `json:"model_uuid"`
	Region           string `json:"region"`
	ProjectID        string `json:"project_id"`
}

// State returns a copy of the platform's keys and agents.
func (e *Emulator) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	keys := func(p *provider) []KeyState {
		out := []KeyState{}
		for _, k := range e.keys[p.name] {
			out = append(out, KeyState{UUID: k.uuid, Name: k.name, Secret: k.secret, CreatedAt: k.createdAt, UpdatedAt: k.updatedAt})
		}
		return out
	}
	s := State{AnthropicKeys: keys(anthropic), OpenAIKeys: keys(openAI), Agents: []AgentState{}, Revoked: len(e.revoked)}
	for _, a := range e.agents {
		s.Agents = append(s.Agents, AgentState{
			UUID: a.uuid, Name: a.name, AnthropicKeyUUID: a.anthropicKeyUUID, OpenAIKeyUUID: a.openAIKeyUUID,
			Instruction: a.instruction, ModelUUID: a.modelUUID, Region: a.region, ProjectID: a.projectID,
		})
	}
	return s
}

// Revoke makes both providers reject apiKey from now on (401 on the key
// check, verification failure on the platform). Keys already stored keep it.
func (e *Emulator) Revoke(apiKey string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.revoked[apiKey] = true
}

// InjectFault queues f. It panics on a fault that cannot be applied (unknown
// mode, negative count or delay, non-error status): a broken test setup
// should fail loudly rather than silently test nothing.
func (e *Emulator) InjectFault(f Fault) {
	if err := e.injectFault(f); err != nil {
		panic("emulator: InjectFault: " + err.Error())
	}
}

func (e *Emulator) injectFault(f Fault) error {
	f, err := f.normalized()
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = append(e.faults, &f)
	return nil
}

// SetLatency adds d to every platform and provider request (0 removes it).
func (e *Emulator) SetLatency(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.latency = max(d, 0)
}

// SetRateLimits changes the per-token limits; a value <= 0 restores the
// configured one. Requests already in the windows keep counting.
func (e *Emulator) SetRateLimits(perMinute, perHour int) {
	if perMinute <= 0 {
		perMinute = e.cfg.PerMinuteLimit
	}
	if perHour <= 0 {
		perHour = e.cfg.PerHourLimit
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.limits = limits{perMinute: perMinute, perHour: perHour}
}

// SetClockSkew sets how far the platform's clock runs ahead of this
// machine's (negative: behind); Reset sets it back to 0.
func (e *Emulator) SetClockSkew(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.clockSkew = d
}

// OmitSinglePageLinks makes a listing that fits on one page leave "links"
// out (true), as DigitalOcean's reference says it may, or carry them with
// "first" (false, the default, as godo's test data shows); Reset sets false.
// Clients have to accept both.
func (e *Emulator) OmitSinglePageLinks(omit bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.omitSinglePageLinks = omit
}

// ClearFaults drops every fault not used up yet; state stays as it is.
func (e *Emulator) ClearFaults() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = nil
}

// PendingFaults is how many uses of injected faults are still queued: a
// test waits for 0 to know that its request took its fault.
func (e *Emulator) PendingFaults() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, f := range e.faults {
		n += f.Count
	}
	return n
}

// Statuses returns how many platform answers had each HTTP status since the
// last Reset; 0 counts requests that got none (dropped, or the client left).
func (e *Emulator) Statuses() map[int]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.statuses)
}

// Counts returns how many requests reached each route, keyed like
// "POST /v2/gen-ai/anthropic/keys" or "GET /anthropic/v1/models". A request
// counts on arrival, whatever its outcome (401, 429, fault, success).
func (e *Emulator) Counts() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.counts)
}

// Reset clears keys, agents, revocations, faults, latency, counts, rate
// windows and run-time rate limits, and the providers' Admin API state
// (service accounts, Anthropic keys, projects but the default one), and
// releases hung requests. Config, tokens added with AddToken and admin keys
// added with AddAdminKey stay.
func (e *Emulator) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resetLocked()
}

// AddToken makes the platform accept token as well.
func (e *Emulator) AddToken(token string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tokens[token] = true
}

// RemoveToken makes the platform refuse token from now on, as DigitalOcean
// does once a token is deleted (after a rotation, say). Reset does not bring
// it back.
func (e *Emulator) RemoveToken(token string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.tokens, token)
}

// serveControl is the HTTP face of the methods above. It has no auth and
// bypasses counts, latency, rate limits and faults, so a test can always
// inspect and steer the emulator.
func (e *Emulator) serveControl(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(headerRequestID, newUUID())
	name := strings.TrimPrefix(r.URL.Path, controlPrefix)
	type op struct {
		method string
		serve  func(w http.ResponseWriter, r *http.Request) error
	}
	ops := map[string]op{
		"state": {http.MethodGet, func(w http.ResponseWriter, _ *http.Request) error { writeJSON(w, http.StatusOK, e.State()); return nil }},
		"counts": {http.MethodGet, func(w http.ResponseWriter, _ *http.Request) error {
			writeJSON(w, http.StatusOK, e.Counts())
			return nil
		}},
		"statuses": {http.MethodGet, func(w http.ResponseWriter, _ *http.Request) error {
			writeJSON(w, http.StatusOK, e.Statuses())
			return nil
		}},
		"requests": {http.MethodGet, func(w http.ResponseWriter, _ *http.Request) error {
			writeJSON(w, http.StatusOK, e.Requests())
			return nil
		}},
		"secret-changes": {http.MethodGet, func(w http.ResponseWriter, _ *http.Request) error {
			writeJSON(w, http.StatusOK, e.SecretChanges())
			return nil
		}},
		"agent-api-keys": {http.MethodGet, func(w http.ResponseWriter, _ *http.Request) error {
			writeJSON(w, http.StatusOK, e.AgentAPIKeys())
			return nil
		}},
		"revoke":      {http.MethodPost, e.controlRevoke},
		"faults":      {http.MethodPost, e.controlFault},
		"latency":     {http.MethodPost, e.controlLatency},
		"rate-limits": {http.MethodPost, e.controlRateLimits},
		"reset":       {http.MethodPost, func(http.ResponseWriter, *http.Request) error { e.Reset(); return nil }},
		"tokens":      {http.MethodPost, e.controlToken},
		"clock":       {http.MethodPost, e.controlClock},
		"list-links":  {http.MethodPost, e.controlListLinks},
		"provider-state": {http.MethodGet, func(w http.ResponseWriter, _ *http.Request) error {
			writeJSON(w, http.StatusOK, e.ProviderState())
			return nil
		}},
		"admin-keys":              {http.MethodPost, e.controlAdminKey},
		"anthropic-keys":          {http.MethodPost, e.controlAnthropicKey},
		"openai-projects":         {http.MethodPost, e.controlOpenAIProject},
		"openai-projects/archive": {http.MethodPost, e.controlArchiveOpenAIProject},
	}
	o, ok := ops[name]
	switch {
	case !ok:
		writePlatformError(w, http.StatusNotFound, "not_found", "no such control endpoint")
		return
	case r.Method != o.method:
		w.Header().Set("Allow", o.method)
		writePlatformError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Method Not Allowed")
		return
	}
	cw := &controlWriter{ResponseWriter: w}
	if err := o.serve(cw, r); err != nil {
		writePlatformError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	if o.method == http.MethodPost && !cw.wrote {
		w.WriteHeader(http.StatusNoContent)
	}
}

// controlWriter notes whether a control operation answered with a body (one
// that returns what it created); the others get 204.
type controlWriter struct {
	http.ResponseWriter
	wrote bool
}

func (c *controlWriter) WriteHeader(status int) {
	c.wrote = true
	c.ResponseWriter.WriteHeader(status)
}

// decodeControl reads a control body strictly: a typo in a field name
// should fail the test setup, not be ignored.
func decodeControl(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid body: %w", err)
	}
	return nil
}

func (e *Emulator) controlRevoke(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		APIKey string `json:"api_key"`
	}
	if err := decodeControl(w, r, &body); err != nil {
		return err
	}
	if body.APIKey == "" {
		return fmt.Errorf("api_key is required")
	}
	e.Revoke(body.APIKey)
	return nil
}

func (e *Emulator) controlFault(w http.ResponseWriter, r *http.Request) error {
	var f Fault
	if err := decodeControl(w, r, &f); err != nil {
		return err
	}
	return e.injectFault(f)
}

func (e *Emulator) controlLatency(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Latency json.RawMessage `json:"latency"`
	}
	if err := decodeControl(w, r, &body); err != nil {
		return err
	}
	d, err := parseDuration(body.Latency)
	if err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	if d < 0 {
		return fmt.Errorf("latency %s is negative", d)
	}
	e.SetLatency(d)
	return nil
}

func (e *Emulator) controlRateLimits(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		PerMinute int `json:"per_minute"`
		PerHour   int `json:"per_hour"`
	}
	if err := decodeControl(w, r, &body); err != nil {
		return err
	}
	e.SetRateLimits(body.PerMinute, body.PerHour)
	return nil
}

func (e *Emulator) controlToken(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Token string `json:"token"`
	}
	if err := decodeControl(w, r, &body); err != nil {
		return err
	}
	if body.Token == "" {
		return fmt.Errorf("token is required")
	}
	e.AddToken(body.Token)
	return nil
}

func (e *Emulator) controlClock(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Skew json.RawMessage `json:"skew"`
	}
	if err := decodeControl(w, r, &body); err != nil {
		return err
	}
	d, err := parseDuration(body.Skew)
	if err != nil {
		return fmt.Errorf("skew: %w", err)
	}
	e.SetClockSkew(d)
	return nil
}

func (e *Emulator) controlListLinks(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		OmitSinglePage bool `json:"omit_single_page"`
	}
	if err := decodeControl(w, r, &body); err != nil {
		return err
	}
	e.OmitSinglePageLinks(body.OmitSinglePage)
	return nil
}

func (e *Emulator) controlAdminKey(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Provider string `json:"provider"`
		APIKey   string `json:"api_key"`
	}
	if err := decodeControl(w, r, &body); err != nil {
		return err
	}
	return e.addAdminKey(body.Provider, body.APIKey)
}

// controlAnthropicKey answers 200 {"id"} with the key's Admin API id.
func (e *Emulator) controlAnthropicKey(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		APIKey string `json:"api_key"`
		Name   string `json:"name"`
	}
	if err := decodeControl(w, r, &body); err != nil {
		return err
	}
	id, err := e.addAnthropicKey(body.APIKey, body.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id})
	return nil
}

// controlOpenAIProject answers 200 {"id"} with the project's id.
func (e *Emulator) controlOpenAIProject(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := decodeControl(w, r, &body); err != nil {
		return err
	}
	id, err := e.addOpenAIProject(body.ID, body.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id})
	return nil
}

func (e *Emulator) controlArchiveOpenAIProject(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		ID string `json:"id"`
	}
	if err := decodeControl(w, r, &body); err != nil {
		return err
	}
	return e.archiveOpenAIProject(body.ID)
}
