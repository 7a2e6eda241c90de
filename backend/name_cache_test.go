package backend

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// slowListing is a platform whose key listing waits until released, and
// fails if its context ends first.
type slowListing struct {
	platform.Client
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (p *slowListing) ListKeys(ctx context.Context, _ string) ([]platform.Key, error) {
	p.once.Do(func() { close(p.started) })
	select {
	case <-p.release:
		return []platform.Key{{UUID: "11111111-2222-4333-8444-555555555555", Name: "taken"}}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// One caller that gives up does not fail the others sharing its listing:
// the shared listing runs detached from any one caller, bounded by the
// request timeout.
func TestNameCache_CancelledCallerDoesNotFailOthers(t *testing.T) {
	cache := newNameCache(time.Now)
	p := &slowListing{started: make(chan struct{}), release: make(chan struct{})}

	first, cancel := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, err := cache.lookup(first, p, platform.Anthropic, "taken", time.Minute, 10*time.Second)
		firstErr <- err
	}()
	<-p.started
	second := make(chan string, 1)
	secondErr := make(chan error, 1)
	go func() {
		uuid, err := cache.lookup(context.Background(), p, platform.Anthropic, "taken", time.Minute, 10*time.Second)
		second <- uuid
		secondErr <- err
	}()

	time.Sleep(50 * time.Millisecond) // let the second caller join the listing in flight
	cancel()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled caller got %v, want context.Canceled", err)
	}
	close(p.release)
	if uuid, err := <-second, <-secondErr; err != nil || uuid == "" {
		t.Fatalf("the other caller got uuid %q, error %v; want the listing's answer", uuid, err)
	}
}
