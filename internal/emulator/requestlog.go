package emulator

import (
	"net/http"
	"slices"
	"time"
)

// The request log answers "who called, and what came of it": a test of a
// Vault cluster tells the nodes' plugin processes apart by the User-Agent
// they send, and counts the platform changes each key went through. It keeps
// the method, path, status and User-Agent of each request, never other
// headers, query strings or bodies, which is where secrets travel.

// RequestRecord is one request to the platform or a provider host (control
// requests are not logged).
type RequestRecord struct {
	Seq       int       `json:"seq"`        // 1, 2, ... in order of arrival
	Time      time.Time `json:"time"`       // arrival, this machine's clock
	Method    string    `json:"method"`     //
	Path      string    `json:"path"`       // URL path only
	UserAgent string    `json:"user_agent"` // as sent
	// Status is the HTTP status answered; 0 while the request is still
	// being served (Pending), or when it got none (Dropped, or the client
	// went away).
	Status  int  `json:"status"`
	Pending bool `json:"pending"`
	Dropped bool `json:"dropped"` // a drop or late fault closed the connection
}

// maxRequestLog bounds the log; the oldest records go first.
const maxRequestLog = 10_000

// activity is the request log and the per-key count of secret changes.
// Guarded by Emulator.mu; Reset empties it.
type activity struct {
	requests []RequestRecord
	nextSeq  int
	// secretChanges counts, by key uuid, the updates that changed the
	// key's secret (a PUT that re-sends the same secret is not one).
	secretChanges map[string]int
}

func newActivity() activity {
	return activity{nextSeq: 1, secretChanges: map[string]int{}}
}

// beginRequest logs r on arrival, pending, and returns its sequence number.
func (e *Emulator) beginRequest(r *http.Request) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := &e.activity
	seq := a.nextSeq
	a.nextSeq++
	a.requests = append(a.requests, RequestRecord{
		Seq: seq, Time: time.Now().UTC(), Method: r.Method, Path: r.URL.Path,
		UserAgent: r.UserAgent(), Pending: true,
	})
	if over := len(a.requests) - maxRequestLog; over > 0 {
		a.requests = slices.Delete(a.requests, 0, over)
	}
	return seq
}

// endRequest records how request seq ended. A Reset in between emptied the
// log, and then there is nothing to update.
func (e *Emulator) endRequest(seq int, rec *recorder) {
	e.mu.Lock()
	defer e.mu.Unlock()
	reqs := e.activity.requests
	i, found := slices.BinarySearchFunc(reqs, seq, func(r RequestRecord, seq int) int { return r.Seq - seq })
	if !found {
		return
	}
	reqs[i].Pending = false
	reqs[i].Status = rec.status
	reqs[i].Dropped = rec.dropped
}

// noteSecretChangeLocked counts a change of key uuid's secret; the caller
// holds e.mu.
func (e *Emulator) noteSecretChangeLocked(uuid string) { e.activity.secretChanges[uuid]++ }

// Requests returns the request log since the last Reset, oldest first (at
// most the last 10,000 requests).
func (e *Emulator) Requests() []RequestRecord {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.activity.requests)
}

// SecretChanges returns, by key uuid, how many updates changed each key's
// secret since the last Reset (creation is not a change). A rotation pushed
// twice with the same secret counts once.
func (e *Emulator) SecretChanges() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.activity.secretChanges))
	for k, v := range e.activity.secretChanges {
		out[k] = v
	}
	return out
}
