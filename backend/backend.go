// Package backend is a Vault secrets engine that keeps Anthropic and OpenAI
// API keys in Vault and pushes them, verified, to DigitalOcean's Gradient AI
// platform as "partner provider keys".
package backend

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/providers"
)

// Version is the plugin's version, reported to Vault; set by the build with
// -ldflags "-X .../backend.Version=v1.2.3".
var Version = "v0.0.0-dev"

// operationPrefix starts every OpenAPI operation id ("gradient-write-key").
const operationPrefix = "gradient"

const backendHelp = `The Gradient secrets engine keeps Anthropic and OpenAI API keys in Vault and
pushes them, verified with the provider, to DigitalOcean's Gradient AI
platform as partner provider keys. Configure it at "config", manage keys at
"keys/<name>", hand them to consumers at "creds/<name>".`

// Factory is the plugin's entry point, called by Vault for every mount. Its
// tuning is the floors in a release build (tuning.go).
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	t, err := buildTuning()
	if err != nil {
		return nil, err
	}
	return factory(ctx, conf, t)
}

// factory is Factory with the tuning given; unit tests call it.
func factory(ctx context.Context, conf *logical.BackendConfig, t tuning) (*gradientBackend, error) {
	b := newBackend(t)
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

type gradientBackend struct {
	*framework.Backend

	// clientsMu guards cached, the clients built from the stored config;
	// invalidate drops them when config changes on any node.
	clientsMu sync.RWMutex
	cached    *clients
	// buildClients builds clients from a config; tests can swap it.
	buildClients func(*gradientConfig) (*clients, error)

	// nameLocks serialize work on one key name without a global lock across
	// network calls; uuidLocks serialize adoptions and renames of one
	// platform key, so two names never manage it.
	nameLocks []*locksutil.LockEntry
	uuidLocks []*locksutil.LockEntry

	names *nameCache
	// budget is the mount's share of the platform's rate limits, shared by
	// every request, the scheduler and background work; it outlives the
	// clients, which a config write replaces.
	budget *platform.Budget

	// clock is the backend's one clock: WAL entries, the schedulers, the
	// name cache, the rate budget and the platform clock read it through
	// now. Tests replace it here, before the part they drive starts.
	clock func() time.Time
	// tuning is the pace tests may change (tuning.go).
	tuning tuning
	// walMaxAge bounds how long a failing rollback is retried; tests change
	// it.
	walMaxAge time.Duration

	// rotation runs scheduled rotations (rotation.go).
	rotation *rotationScheduler

	// adminPace paces the providers' Admin API calls (internal/providers);
	// retirements tracks when replaced keys are due for retirement
	// (retire.go). Both outlive the clients.
	adminPace   providers.Pace
	retirements *retirementPlan
	// syncer runs the periodic sync (sync.go).
	syncer *syncScheduler
	// syncView keeps sync/state for reads of keys/<name> (sync.go).
	syncView *syncStateView
	// keyCache keeps decoded entries for the reads of keys/<name> and
	// creds/<name> (key_cache.go).
	keyCache *keyCache

	// agentMark is this mount's mark in the names of the agent API keys
	// it makes, once read or chosen (change_agent_key.go); agentMarkMu
	// keeps two first issues from choosing two.
	agentMarkMu sync.Mutex
	agentMark   string

	// secretFields are the fields refused unless they are strings
	// (requests.go), derived from the paths' schemas.
	secretFields []string
}

// clients is what a handler needs to reach the outside world, built from
// one version of the config.
type clients struct {
	config   *gradientConfig
	platform platform.Client
	// agentKeys reaches agents' API keys (agent-creds/<name>); the same
	// godo client as platform.
	agentKeys platform.AgentKeys
	verifier  providers.Verifier
	admin     providers.Admin
}

// closeIdleConnections closes the idle keep-alive connections of the clients
// that have any. Clients that are replaced and not closed keep theirs, and
// two goroutines each, until the idle timeout: a few config writes in a row
// piled up hundreds. A request still running keeps its connection; net/http
// closes it once idle unless another request starts on that client.
func (c *clients) closeIdleConnections() {
	for _, c := range []any{c.platform, c.verifier, c.admin} {
		if c, ok := c.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
}

func newBackend(t tuning) *gradientBackend {
	b := &gradientBackend{
		nameLocks:   locksutil.CreateLocks(),
		uuidLocks:   locksutil.CreateLocks(),
		clock:       time.Now,
		tuning:      t,
		walMaxAge:   defaultWALMaxAge,
		adminPace:   providers.NewPace(),
		retirements: newRetirementPlan(),
		keyCache:    &keyCache{},
	}
	b.names = newNameCache(b.now)
	b.budget = platform.NewBudget(0, 0, b.now)
	b.buildClients = func(cfg *gradientConfig) (*clients, error) {
		return newClients(cfg, b.budget, b.tuning.retryBaseDelay, b.adminPace)
	}
	b.rotation = newRotationScheduler(b)
	b.syncer = newSyncScheduler(b)
	b.syncView = &syncStateView{}
	b.Backend = &framework.Backend{
		Help:           backendHelp,
		BackendType:    logical.TypeLogical,
		RunningVersion: Version,
		PathsSpecial: &logical.Paths{
			// Key material lives under config, keys/ and agent-static/: seal-wrapped where
			// the seal supports it.
			SealWrapStorage: []string{configPath, keyStoragePrefix, agentStaticStoragePrefix},
			// A WAL entry describes a platform change made by this cluster
			// and is rolled back by its active node: it is not sent to
			// performance secondaries. The nodes of one cluster share it, so
			// after a failover the new active node rolls back what the old
			// one left (acceptance TestCluster).
			LocalStorage: []string{framework.WALPrefix},
			// A rename moves a key from one name prefix to another, which an
			// ACL on the source path alone cannot see: it needs sudo.
			Root: []string{"rename/*"},
		},
		// Vault routes to the first pattern that matches: every
		// keys/<name>/<verb> path comes before the keys/<name> catch-all.
		Paths: []*framework.Path{
			pathConfig(b), pathStatus(b),
			pathKeyRotate(b), pathKeySync(b), pathKeyAgents(b), pathKeyReassign(b),
			pathKeysList(b), pathKey(b),
			pathRename(b), pathCreds(b), pathSync(b),
			pathPlatformKeysList(b), pathPlatformKey(b),
			pathAgentRolesList(b), pathAgentRole(b), pathAgentCreds(b), pathAgentCredsTidy(b),
			pathAgentStaticRolesList(b), pathAgentStaticRoleRotate(b), pathAgentStaticRole(b), pathAgentStaticCreds(b),
		},
		Secrets:           []*framework.Secret{secretCreds(b), secretAgentCreds(b), secretAgentStaticCreds(b)},
		InitializeFunc:    b.initialize,
		Clean:             b.clean,
		Invalidate:        b.invalidate,
		WALRollback:       b.walRollback,
		WALRollbackMinAge: t.walMinAge,
	}
	b.secretFields = sensitiveFields(b.Paths)
	return b
}

// now reads the backend's clock; the parts that keep time are handed this
// method, so replacing b.clock reaches all of them.
func (b *gradientBackend) now() time.Time { return b.clock() }

// invalidate runs on standbys and performance secondaries when storage they
// cache changes under them.
func (b *gradientBackend) invalidate(_ context.Context, key string) {
	switch key {
	case configPath:
		b.dropClients()
	case syncStatePath:
		b.syncView.drop()
	case agentMountIDPath:
		b.forgetAgentMountID()
	default:
		if name, ok := strings.CutPrefix(key, keyStoragePrefix); ok {
			b.keyCache.forget(name)
		}
	}
}

// dropClients forgets the cached clients (and the platform names learnt
// through them), so the next request builds them from the stored config.
func (b *gradientBackend) dropClients() {
	b.clientsMu.Lock()
	defer b.clientsMu.Unlock()
	if b.cached != nil {
		b.cached.closeIdleConnections()
	}
	b.cached = nil
	b.names.reset()
}

// clients returns the cached clients, building them from the stored config
// the first time; errNotConfigured when there is none. The cache is
// re-checked after taking the write lock so concurrent first calls build
// once.
func (b *gradientBackend) clients(ctx context.Context, s logical.Storage) (*clients, error) {
	b.clientsMu.RLock()
	c := b.cached
	b.clientsMu.RUnlock()
	if c != nil {
		return c, nil
	}

	b.clientsMu.Lock()
	defer b.clientsMu.Unlock()
	if b.cached != nil {
		return b.cached, nil
	}
	cfg, err := getConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, errNotConfigured
	}
	c, err = b.buildClients(cfg)
	if err != nil {
		return nil, err
	}
	b.useClientsLocked(cfg, c)
	return c, nil
}

// useClientsLocked makes c, built from the stored cfg, the cached clients,
// and applies cfg's rate limits to the budget. Only a stored config gets
// here (a config write calls it once its checks passed and it is saved), so
// a refused write never changes the live budget. The budget's counts carry
// over: what the mount already sent still counts. The caller holds clientsMu
// for writing.
func (b *gradientBackend) useClientsLocked(cfg *gradientConfig, c *clients) {
	if b.cached != nil && b.cached != c {
		b.cached.closeIdleConnections()
	}
	b.cached = c
	b.budget.Configure(cfg.RateLimitPerMinute, cfg.RateLimitPerHour, cfg.schedulerHeadroom())
	b.sizeKeyCache(cfg)
}

// newClients builds every client of one config, once: the platform client,
// whose requests wait for budget, the verifier and the Admin API client,
// paced by pace. It leaves the budget's limits alone (useClientsLocked
// applies them). retryBase is the first backoff of a retried call.
func newClients(cfg *gradientConfig, budget *platform.Budget, retryBase time.Duration, pace providers.Pace) (*clients, error) {
	p, err := platform.New(withTrailingSlash(cfg.APIURL), cfg.Token, userAgent(), cfg.RequestTimeout, budget, retryBase)
	if err != nil {
		return nil, err
	}
	pc := cfg.providersConfig(retryBase)
	var v providers.Verifier = skipVerification{}
	if cfg.VerifyKeys {
		v = providers.NewVerifier(pc)
	}
	return &clients{config: cfg, platform: p, agentKeys: p, verifier: v, admin: providers.NewAdmin(pc, pace)}, nil
}

// providersConfig is the part of the config the provider clients use, with
// the backend's first backoff of a retried call.
func (cfg *gradientConfig) providersConfig(retryBase time.Duration) providers.Config {
	return providers.Config{
		AnthropicURL: cfg.AnthropicURL, OpenAIURL: cfg.OpenAIURL,
		AnthropicAdminKey: cfg.AnthropicAdminKey, OpenAIAdminKey: cfg.OpenAIAdminKey,
		Timeout: cfg.RequestTimeout, RetryBase: retryBase,
	}
}

// userAgent names the plugin, its version and its process to the platform,
// e.g. "vault-plugin-secrets-gradient/v1.2.0 (pid 4242)": on a Vault cluster,
// each node runs its own plugin process, and the pid tells an operator (or
// the cluster test) which node made a call.
func userAgent() string {
	return fmt.Sprintf("vault-plugin-secrets-gradient/%s (pid %d)", Version, os.Getpid())
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

// initialize and clean are the backend's InitializeFunc and Clean: the
// rotation scheduler and the periodic sync.
func (b *gradientBackend) initialize(ctx context.Context, req *logical.InitializationRequest) error {
	// The schedulers keep this storage: their writes keep the key cache
	// right too.
	req.Storage = b.keepingCache(req.Storage)
	if err := b.initializeRotation(ctx, req); err != nil {
		return err
	}
	return b.initializeSync(ctx, req)
}

func (b *gradientBackend) clean(ctx context.Context) {
	b.cleanSync(ctx)
	b.cleanRotation(ctx)
}
