package backend

import (
	"context"
	"time"
)

// tickerLoop is one background goroutine that calls a tick function on an
// interval until it is stopped: the rotation scheduler and the periodic sync
// each own one. Its owner guards it with its own lock.
type tickerLoop struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs tick every interval (and once at once when immediate), unless
// the interval is zero (tests tick by hand) or the loop already runs.
func (l *tickerLoop) start(interval time.Duration, immediate bool, tick func(context.Context)) {
	if interval <= 0 || l.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	l.cancel, l.done = cancel, done
	go func() {
		defer close(done)
		if immediate {
			tick(ctx)
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				tick(ctx)
			}
		}
	}()
}

// detach forgets the loop, under the owner's lock, and returns the function
// that stops it and waits for a tick in progress. Call that after releasing
// the lock: the tick may need it.
func (l *tickerLoop) detach() (stopAndWait func()) {
	cancel, done := l.cancel, l.done
	l.cancel, l.done = nil, nil
	return func() {
		if cancel != nil {
			cancel()
			<-done
		}
	}
}
