package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// errorWriter answers a request with an error in the style of one host. The
// routing, fault and hang code use it so each host keeps its own error shape.
type errorWriter func(w http.ResponseWriter, r *http.Request, status int, message string)

// platformError is DigitalOcean's error body; godo decodes it into
// *godo.ErrorResponse.
type platformError struct {
	ID        string `json:"id"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// apiError is the platform error a handler decides on while it holds the
// lock; answerLocked writes it once the lock is released.
type apiError struct {
	status      int
	id, message string
}

func notFound() *apiError { return &apiError{http.StatusNotFound, "not_found", msgNotFound} }

func invalidArgument(message string) *apiError {
	return &apiError{http.StatusBadRequest, "invalid_argument", message}
}

// answerLocked runs fn under the emulator's lock and writes its answer, a
// 200 with the body or the platform error, after unlocking: no handler
// writes to the network while holding the lock.
func (e *Emulator) answerLocked(w http.ResponseWriter, fn func() (any, *apiError)) {
	e.mu.Lock()
	body, apiErr := fn()
	e.mu.Unlock()
	if apiErr != nil {
		writePlatformError(w, apiErr.status, apiErr.id, apiErr.message)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// writePlatformError repeats the request id already set in x-request-id.
func writePlatformError(w http.ResponseWriter, status int, id, message string) {
	writeJSON(w, status, platformError{ID: id, Message: message, RequestID: w.Header().Get(headerRequestID)})
}

// platformErrors picks the error id DigitalOcean uses for a status.
func platformErrors(w http.ResponseWriter, _ *http.Request, status int, message string) {
	id := "server_error"
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		id = "invalid_argument"
	case http.StatusUnauthorized:
		id = "unauthorized"
	case http.StatusForbidden:
		id = "forbidden"
	case http.StatusNotFound:
		id = "not_found"
	case http.StatusMethodNotAllowed:
		id = "method_not_allowed"
	case http.StatusConflict:
		id = "conflict"
	case http.StatusRequestEntityTooLarge:
		id = "request_entity_too_large"
	case http.StatusTooManyRequests:
		// The platform has one text for every 429, a fault's included.
		id, message = "too_many_requests", msgRateLimited
	case http.StatusServiceUnavailable:
		id = "service_unavailable"
	case http.StatusGatewayTimeout:
		id = "gateway_timeout"
	}
	writePlatformError(w, status, id, message)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only emulator bugs get here: every body is a plain struct.
		panic(fmt.Sprintf("emulator: encoding response: %v", err))
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// maxBody bounds request bodies; every real body is a few hundred bytes.
const maxBody = 1 << 20

// decodeBody reads a JSON object into v. An empty body counts as {} so a
// PUT without changes is not an error. The body is already in memory
// (bufferBody), so this cannot block on the client.
func decodeBody(r *http.Request, v any) error {
	err := json.NewDecoder(r.Body).Decode(v)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
