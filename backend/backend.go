// Package backend is a Vault secrets engine that keeps Anthropic and OpenAI
// API keys in Vault and pushes them, verified, to DigitalOcean's Gradient AI
// platform as "partner provider keys".
package backend

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// Version is the plugin's version, reported to Vault; set by the build with
// -ldflags "-X .../backend.Version=v1.2.3".
var Version = "v0.0.0-dev"

// operationPrefix starts every OpenAPI operation id ("gradient-write-key").
const operationPrefix = "gradient"

const backendHelp = `The Gradient secrets engine keeps Anthropic and OpenAI API keys in Vault and pushes them, verified with the provider, to DigitalOcean's Gradient AI platform as partner provider keys. Configure it at "config", manage keys at "keys/<name>", hand them to consumers at "creds/<name>".`

// Factory is the plugin's entry point, called by Vault for every mount.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend()
	if err := b.applyTestTuning(); err != nil {
		return nil, err
	}
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

type gradientBackend struct {
	*framework.Backend

	// upstreamMu guards upstream, the clients built from the stored config;
	// invalidate drops them when config changes on any node.
	upstreamMu sync.RWMutex
	upstream   *upstream

	// nameLocks serialize work on one key name without a global lock across
	// network calls.
	nameLocks []*locksutil.LockEntry
	// adoptMu makes "is this uuid managed already?" and the store that
	// follows atomic across names; only adoptions take it.
	adoptMu sync.Mutex

	names *nameCache

	// newUpstream builds clients from a config; tests can swap it.
	newUpstream func(*gradientConfig) (*upstream, error)

	// rotation runs scheduled rotations (rotation.go).
	rotation *rotationScheduler
}

// upstream is what a handler needs to reach the outside world.
type upstream struct {
	config   *gradientConfig
	platform platform
	verifier keyVerifier
}

func newBackend() *gradientBackend {
	b := &gradientBackend{
		nameLocks:   locksutil.CreateLocks(),
		names:       newNameCache(),
		newUpstream: defaultUpstream,
	}
	b.rotation = newRotationScheduler(b)
	b.Backend = &framework.Backend{
		Help:           backendHelp,
		BackendType:    logical.TypeLogical,
		RunningVersion: Version,
		PathsSpecial: &logical.Paths{
			// Key material lives under config and keys/: seal-wrapped where
			// the seal supports it.
			SealWrapStorage: []string{configPath, keyStoragePrefix},
			// A WAL entry describes a platform change made by this node and
			// is rolled back by this node: it is not replicated.
			LocalStorage: []string{framework.WALPrefix},
			// A rename moves a key from one name prefix to another, which an
			// ACL on the source path alone cannot see: it needs sudo.
			Root: []string{"rename/*"},
		},
		Paths: framework.PathAppend(
			// keys/<name>/rotate comes before the keys/<name> catch-all.
			[]*framework.Path{pathConfig(b), pathKeyRotate(b), pathStatus(b)},
			pathKeys(b),
			[]*framework.Path{pathRename(b), pathCreds(b)},
		),
		Secrets:           []*framework.Secret{secretCreds(b)},
		InitializeFunc:    b.initializeRotation,
		Clean:             b.cleanRotation,
		Invalidate:        b.invalidate,
		WALRollback:       b.walRollback,
		WALRollbackMinAge: walRollbackMinAge,
	}
	return b
}

// invalidate runs on standbys and performance secondaries when storage they
// cache changes under them.
func (b *gradientBackend) invalidate(_ context.Context, key string) {
	if key == configPath {
		b.resetUpstream()
	}
}

func (b *gradientBackend) resetUpstream() {
	b.upstreamMu.Lock()
	defer b.upstreamMu.Unlock()
	b.upstream = nil
	b.names.reset()
}

var errNotConfigured = errors.New("not configured")

// getUpstream returns the cached clients, building them from the stored
// config the first time. The cache is re-checked after taking the write lock
// so concurrent first calls build once.
func (b *gradientBackend) getUpstream(ctx context.Context, s logical.Storage) (*upstream, error) {
	b.upstreamMu.RLock()
	up := b.upstream
	b.upstreamMu.RUnlock()
	if up != nil {
		return up, nil
	}

	b.upstreamMu.Lock()
	defer b.upstreamMu.Unlock()
	if b.upstream != nil {
		return b.upstream, nil
	}
	cfg, err := getConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, errNotConfigured
	}
	up, err = b.newUpstream(cfg)
	if err != nil {
		return nil, err
	}
	b.upstream = up
	return up, nil
}

// upstreamFor is getUpstream for handlers: an unconfigured mount is the
// caller's to fix.
func (b *gradientBackend) upstreamFor(ctx context.Context, req *logical.Request) (*upstream, error) {
	up, err := b.getUpstream(ctx, req.Storage)
	if errors.Is(err, errNotConfigured) {
		return nil, callerErrorf("this mount is not configured: write %sconfig with a DigitalOcean token first", req.MountPoint)
	}
	return up, err
}

func defaultUpstream(cfg *gradientConfig) (*upstream, error) {
	p, err := newGodoPlatform(withTrailingSlash(cfg.APIURL), cfg.Token, "vault-plugin-secrets-gradient/"+Version, cfg.RequestTimeout)
	if err != nil {
		return nil, err
	}
	var v keyVerifier = skipVerification{}
	if cfg.VerifyKeys {
		v = newHTTPVerifier(cfg.AnthropicURL, cfg.OpenAIURL, cfg.RequestTimeout)
	}
	return &upstream{config: cfg, platform: p, verifier: v}, nil
}

// skipVerification is used when verify_keys is false.
type skipVerification struct{}

func (skipVerification) Verify(context.Context, string, string) error { return nil }

// godo resolves request paths against the base URL, so it needs the slash.
func withTrailingSlash(u string) string {
	if strings.HasSuffix(u, "/") {
		return u
	}
	return u + "/"
}
