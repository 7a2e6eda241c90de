package platform

import (
	"net/http"
	"sync"
	"time"
)

// platformClock tracks how far the platform's clock is from this node's,
// from the Date header of the platform's answers. The undo of a create whose
// answer was lost needs it: the key it made is told from others by its
// created_at, which is on the platform's clock.
//
// A Date header has one-second resolution and was written at some moment
// between sending the request and receiving the answer, so one answer bounds
// the offset to an interval: [date - received, date + 1s - sent].
type platformClock struct {
	mu     sync.Mutex
	lo, hi time.Duration
	known  bool
	now    func() time.Time
}

// newPlatformClock measures against now, the backend's clock.
func newPlatformClock(now func() time.Time) *platformClock { return &platformClock{now: now} }

// offset returns the latest bounds of platform time minus local time.
func (c *platformClock) offset() (lo, hi time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lo, c.hi, c.known
}

func (c *platformClock) observe(sent, received time.Time, header string) {
	date, err := http.ParseTime(header)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lo = date.Sub(received)
	c.hi = date.Add(time.Second).Sub(sent)
	c.known = true
}

// clockTransport feeds every answer's Date header to the clock.
type clockTransport struct {
	clock *platformClock
	base  http.RoundTripper
}

func (t *clockTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	sent := t.clock.now()
	resp, err := t.base.RoundTrip(r)
	if err == nil {
		t.clock.observe(sent, t.clock.now(), resp.Header.Get("Date"))
	}
	return resp, err
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport underneath.
func (t *clockTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
