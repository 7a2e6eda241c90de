package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/providers"
)

const configPath = "config"

const (
	defaultAPIURL         = "https://api.digitalocean.com"
	defaultAnthropicURL   = "https://api.anthropic.com"
	defaultOpenAIURL      = "https://api.openai.com"
	defaultRequestTimeout = 30 * time.Second
	defaultNameCacheTTL   = 10 * time.Second
)

// gradientConfig is the stored config. It is seal-wrapped: it holds the
// DigitalOcean token.
type gradientConfig struct {
	Token          string        `json:"token"`
	APIURL         string        `json:"api_url"`
	AnthropicURL   string        `json:"anthropic_url"`
	OpenAIURL      string        `json:"openai_url"`
	VerifyKeys     bool          `json:"verify_keys"`
	RequestTimeout time.Duration `json:"request_timeout"`
	NameCacheTTL   time.Duration `json:"name_cache_ttl"`
	// The platform's rate limits for this token; the mount paces itself
	// under them (internal/platform/rate_budget.go). Zero (configs stored before these
	// fields existed) means the default.
	RateLimitPerMinute int `json:"rate_limit_per_minute"`
	RateLimitPerHour   int `json:"rate_limit_per_hour"`
	// SchedulerHeadroomPercent is the share of the budget that scheduled
	// work leaves to requests; nil (older configs) means the default.
	SchedulerHeadroomPercent *int `json:"scheduler_headroom_percent,omitempty"`
	// CredsTTL bounds creds/<name> leases; 0 (configs written before it
	// existed) means defaultCredsTTL.
	CredsTTL time.Duration `json:"creds_ttl,omitempty"`
	// The providers' admin keys, for zero-touch rotation (zero_touch.go,
	// retire.go): secrets, sealed with the token and never returned.
	OpenAIAdminKey    string `json:"openai_admin_key,omitempty"`
	AnthropicAdminKey string `json:"anthropic_admin_key,omitempty"`
	// OpenAIProjectIDs are the only projects keys may mint into (zero_touch.go);
	// empty: any project the admin key reaches.
	OpenAIProjectIDs []string `json:"openai_project_ids,omitempty"`
	// KeyCacheSize is how many decoded key entries reads keep in memory
	// (key_cache.go); 0 turns the cache off, nil (configs written before it
	// existed) means the default.
	KeyCacheSize *int `json:"key_cache_size,omitempty"`
	// SyncInterval is how often the active node compares the platform's
	// keys with the mount (sync.go); 0 turns it off, nil (configs written
	// before it existed) means the default.
	SyncInterval *time.Duration `json:"sync_interval,omitempty"`
}

func pathConfig(b *gradientBackend) *framework.Path {
	configWrite := changeOperation(answered(b.handleConfigWrite), "Configure the platform token and endpoints.", "configure", map[int][]framework.Response{http.StatusNoContent: {{Description: "No Content"}}})
	return &framework.Path{
		Pattern:      configPath + "$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix},
		Fields: map[string]*framework.FieldSchema{
			"token": {
				Type:         framework.TypeString,
				Description:  "DigitalOcean API token with the genai read, create, update and delete scopes. Required on the first write; never returned.",
				DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
			},
			"api_url": {
				Type:        framework.TypeString,
				Description: "Base URL of the DigitalOcean API.",
				Default:     defaultAPIURL,
			},
			"anthropic_url": {
				Type:        framework.TypeString,
				Description: "Base URL of the Anthropic API, used to verify Anthropic keys.",
				Default:     defaultAnthropicURL,
			},
			"openai_url": {
				Type:        framework.TypeString,
				Description: "Base URL of the OpenAI API, used to verify OpenAI keys.",
				Default:     defaultOpenAIURL,
			},
			"verify_keys": {
				Type:        framework.TypeBool,
				Description: "Check every key with its provider before pushing it.",
				Default:     true,
			},
			"request_timeout": {
				Type:        framework.TypeDurationSecond,
				Description: "Timeout of each call to the platform or a provider.",
				Default:     int(defaultRequestTimeout.Seconds()),
			},
			"name_cache_ttl": {
				Type:        framework.TypeDurationSecond,
				Description: "How long the platform's key names may be reused for the duplicate-name check on create; 0 looks them up on every create.",
				Default:     int(defaultNameCacheTTL.Seconds()),
			},
			"key_cache_size": {
				Type:        framework.TypeInt,
				Description: "How many decoded key entries the active node keeps in memory for reads of keys/<name> and creds/<name> (0 to 100000; at most 128 MiB whatever their number); 0 turns the cache off.",
				Default:     defaultKeyCacheSize,
			},
			"rate_limit_per_minute": {
				Type:        framework.TypeInt,
				Description: "The platform's requests per rolling minute for this token; the mount paces every request at 95% of it.",
				Default:     platform.DefaultRateLimitPerMinute,
			},
			"rate_limit_per_hour": {
				Type:        framework.TypeInt,
				Description: "The platform's requests per rolling hour for this token; the mount keeps each rolling hour within 95% of it, as the platform counts the token.",
				Default:     platform.DefaultRateLimitPerHour,
			},
			"scheduler_headroom_percent": {
				Type:        framework.TypeInt,
				Description: "Share of the mount's rate budget, in percent (0 to 90), that scheduled rotations and syncs always leave to requests.",
				Default:     platform.DefaultSchedulerHeadroomPercent,
			},
			"creds_ttl": {
				Type:        framework.TypeDurationSecond,
				Description: "Longest lease of a creds/<name> read; leases also end at the key's next rotation, and within the mount's max lease TTL.",
				Default:     int(defaultCredsTTL.Seconds()),
			},
			"openai_admin_key":    openAIAdminKeyField,
			"anthropic_admin_key": anthropicAdminKeyField,
			"openai_project_ids": {
				Type:        framework.TypeCommaStringSlice,
				Description: `The only OpenAI projects that keys with source=openai-service-account may mint into (project ids, comma-separated). Checked when a key names its openai_project_id and again at every mint. Empty (the default, or "" to clear): any project openai_admin_key reaches.`,
			},
			"sync_interval": {
				Type:        framework.TypeDurationSecond,
				Description: "How often the active node compares the platform's keys with the mount to find drift; 0 turns the periodic sync off (sync still runs on request).",
				Default:     int(defaultSyncInterval.Seconds()),
			},
		},
		ExistenceCheck: b.configExists,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     answered(b.handleConfigRead),
				Summary:      "Read the configuration; the token is never returned.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "configuration"},
				Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "OK", Fields: configResponseFields}},
				},
			},
			// Writes go to the active node, which checks the token.
			logical.CreateOperation: configWrite,
			logical.UpdateOperation: configWrite,
			logical.DeleteOperation: &framework.PathOperation{
				Callback:                    answered(b.handleConfigDelete),
				Summary:                     "Delete the configuration; stored keys stay in Vault and on the platform.",
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "delete", OperationSuffix: "configuration"},
				Responses:                   map[int][]framework.Response{http.StatusNoContent: {{Description: "No Content"}}},
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    configHelpSynopsis,
		HelpDescription: configHelpDescription,
	}
}

var configResponseFields = map[string]*framework.FieldSchema{
	"api_url":                    {Type: framework.TypeString, Description: "Base URL of the DigitalOcean API.", Required: true},
	"anthropic_url":              {Type: framework.TypeString, Description: "Base URL of the Anthropic API.", Required: true},
	"openai_url":                 {Type: framework.TypeString, Description: "Base URL of the OpenAI API.", Required: true},
	"verify_keys":                {Type: framework.TypeBool, Description: "Whether keys are checked with their provider.", Required: true},
	"request_timeout":            {Type: framework.TypeDurationSecond, Description: "Timeout of each upstream call, in seconds.", Required: true},
	"name_cache_ttl":             {Type: framework.TypeDurationSecond, Description: "How long platform key names are reused, in seconds.", Required: true},
	"rate_limit_per_minute":      {Type: framework.TypeInt, Description: "The platform's requests per rolling minute.", Required: true},
	"rate_limit_per_hour":        {Type: framework.TypeInt, Description: "The platform's requests per rolling hour.", Required: true},
	"scheduler_headroom_percent": {Type: framework.TypeInt, Description: "Share of the budget scheduled work leaves to requests.", Required: true},
	"token_set":                  {Type: framework.TypeBool, Description: "Whether a token is stored.", Required: true},
	"creds_ttl":                  {Type: framework.TypeDurationSecond, Description: "Longest lease of a creds read, in seconds.", Required: true},
	"openai_admin_key_set":       {Type: framework.TypeBool, Description: "Whether an OpenAI admin key is stored (minting and retiring service-account keys).", Required: true},
	"anthropic_admin_key_set":    {Type: framework.TypeBool, Description: "Whether an Anthropic admin key is stored (retiring replaced keys).", Required: true},
	"sync_interval":              {Type: framework.TypeDurationSecond, Description: "Seconds between periodic syncs; 0 when off.", Required: true},
	"key_cache_size":             {Type: framework.TypeInt, Description: "How many decoded key entries the active node keeps for reads; 0 turns the cache off. Performance standbys and secondaries keep none, whatever it says.", Required: true},
	"openai_project_ids":         {Type: framework.TypeCommaStringSlice, Description: "The only OpenAI projects keys may mint into; empty when any project is allowed.", Required: true},
}

func (b *gradientBackend) configExists(ctx context.Context, req *logical.Request, _ *framework.FieldData) (bool, error) {
	cfg, err := getConfig(ctx, req.Storage)
	return cfg != nil, err
}

func (b *gradientBackend) handleConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := getConfig(ctx, req.Storage)
	if err != nil || cfg == nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		"api_url":                    cfg.APIURL,
		"anthropic_url":              cfg.AnthropicURL,
		"openai_url":                 cfg.OpenAIURL,
		"verify_keys":                cfg.VerifyKeys,
		"request_timeout":            int64(cfg.RequestTimeout.Seconds()),
		"name_cache_ttl":             int64(cfg.NameCacheTTL.Seconds()),
		"rate_limit_per_minute":      orDefault(cfg.RateLimitPerMinute, platform.DefaultRateLimitPerMinute),
		"rate_limit_per_hour":        orDefault(cfg.RateLimitPerHour, platform.DefaultRateLimitPerHour),
		"scheduler_headroom_percent": cfg.schedulerHeadroom(),
		"token_set":                  cfg.Token != "",
		"creds_ttl":                  int64(cfg.credsTTL().Seconds()),
		"openai_admin_key_set":       cfg.OpenAIAdminKey != "",
		"anthropic_admin_key_set":    cfg.AnthropicAdminKey != "",
		"sync_interval":              int64(cfg.syncInterval().Seconds()),
		"key_cache_size":             cfg.keyCacheSize(),
		"openai_project_ids":         append([]string{}, cfg.OpenAIProjectIDs...),
	}}, nil
}

// handleConfigWrite merges the request into the stored config, checks the token
// with one platform call, and only then saves. The new clients are built
// aside, under the live budget's current limits, and swapped in (with the
// new limits) only once the whole write succeeded: a refused write leaves
// the mount exactly as it was.
func (b *gradientBackend) handleConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	stored, err := getConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	cfg, err := mergeConfig(stored, d)
	if err != nil {
		return nil, err
	}

	c, err := b.buildClients(cfg)
	if err != nil {
		return nil, err
	}
	swapped := false
	defer func() {
		// Clients never swapped in are closed here: nothing else would
		// close their connections.
		if !swapped {
			c.closeIdleConnections()
		}
	}()
	held := &platform.HeldAnswer{}
	if err := c.platform.CheckToken(platform.WithHeldAnswer(platform.WithBudgetClass(ctx, checkClass(stored, cfg)), held)); err != nil {
		if errors.Is(err, platform.ErrUnauthorized) {
			return nil, callerErrorf("the platform rejected the token (HTTP 401): use a DigitalOcean token with the genai scopes; nothing was saved")
		}
		return nil, fmt.Errorf("checking the token with the platform (nothing was saved): %w", err)
	}
	if err := checkAdminKeys(ctx, c, d); err != nil {
		return nil, err
	}
	if err := b.saveConfig(ctx, req.Storage, cfg, c, held); err != nil {
		return nil, err
	}
	swapped = true
	return nil, nil
}

// saveConfig stores cfg and swaps in its clients and limits under the
// clients lock, so that of two writes at once the clients kept are the
// stored config's. The platform names learnt through the old clients go,
// and the budget follows the count the token check was answered with.
func (b *gradientBackend) saveConfig(ctx context.Context, s logical.Storage, cfg *gradientConfig, c *clients, check *platform.HeldAnswer) error {
	entry, err := logical.StorageEntryJSON(configPath, cfg)
	if err != nil {
		return err
	}
	b.clientsMu.Lock()
	defer b.clientsMu.Unlock()
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing the configuration: %w", err)
	}
	b.names.reset()
	b.useClientsLocked(cfg, c)
	check.ObserveBy(b.budget)
	return nil
}

// checkClass is how the token check of a write takes its place in the live
// budget. A write that keeps the token, the URL and the limits is checked
// under the budget that governs it, like any request: re-applying a config
// in a loop must not spend the token's minute unpaced, at the cost of its
// other users. A write changing any of them may be there because the live
// budget is the wrong one (limits set too low, a token whose hour others
// spent), so its check does not wait for it.
func checkClass(stored, cfg *gradientConfig) platform.BudgetClass {
	if stored == nil || stored.Token != cfg.Token || stored.APIURL != cfg.APIURL ||
		orDefault(stored.RateLimitPerMinute, platform.DefaultRateLimitPerMinute) != orDefault(cfg.RateLimitPerMinute, platform.DefaultRateLimitPerMinute) ||
		orDefault(stored.RateLimitPerHour, platform.DefaultRateLimitPerHour) != orDefault(cfg.RateLimitPerHour, platform.DefaultRateLimitPerHour) ||
		stored.schedulerHeadroom() != cfg.schedulerHeadroom() {
		return platform.ClassConfigCheck
	}
	return platform.ClassRequest
}

func mergeConfig(stored *gradientConfig, d *framework.FieldData) (*gradientConfig, error) {
	cfg := &gradientConfig{
		APIURL:             defaultAPIURL,
		AnthropicURL:       defaultAnthropicURL,
		OpenAIURL:          defaultOpenAIURL,
		VerifyKeys:         true,
		RequestTimeout:     defaultRequestTimeout,
		NameCacheTTL:       defaultNameCacheTTL,
		RateLimitPerMinute: platform.DefaultRateLimitPerMinute,
		RateLimitPerHour:   platform.DefaultRateLimitPerHour,
	}
	if stored != nil {
		*cfg = *stored
	}
	if v, ok := d.GetOk("token"); ok {
		// token=@do-token.txt brings the file's newline, which net/http
		// refuses in a header: trimmed as api_key is.
		cfg.Token = strings.TrimSpace(v.(string))
		if strings.IndexFunc(cfg.Token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			return nil, callerErrorf("token must not contain white space or control characters; check that it was copied whole")
		}
	}
	if cfg.Token == "" {
		return nil, callerErrorf("token is required: a DigitalOcean API token with the genai scopes")
	}
	for field, target := range map[string]*string{"api_url": &cfg.APIURL, "anthropic_url": &cfg.AnthropicURL, "openai_url": &cfg.OpenAIURL} {
		if v, ok := d.GetOk(field); ok {
			*target = v.(string)
		}
		if err := validateBaseURL(field, *target); err != nil {
			return nil, err
		}
	}
	if v, ok := d.GetOk("verify_keys"); ok {
		cfg.VerifyKeys = v.(bool)
	}
	if v, ok := d.GetOk("request_timeout"); ok {
		cfg.RequestTimeout = time.Duration(v.(int)) * time.Second
		if cfg.RequestTimeout <= 0 {
			return nil, callerErrorf("request_timeout must be positive, e.g. 30s")
		}
	}
	if v, ok := d.GetOk("creds_ttl"); ok {
		cfg.CredsTTL = time.Duration(v.(int)) * time.Second
		if cfg.CredsTTL <= 0 {
			return nil, callerErrorf("creds_ttl must be positive, e.g. 1h")
		}
	}
	if v, ok := d.GetOk("name_cache_ttl"); ok {
		cfg.NameCacheTTL = time.Duration(v.(int)) * time.Second
		if cfg.NameCacheTTL < 0 {
			return nil, callerErrorf("name_cache_ttl must be 0 or more, e.g. 10s")
		}
	}
	if v, ok := d.GetOk("key_cache_size"); ok {
		size := v.(int)
		if size < 0 || size > maxKeyCacheSize {
			return nil, callerErrorf("key_cache_size must be between 0 (off) and %d, e.g. %d", maxKeyCacheSize, defaultKeyCacheSize)
		}
		cfg.KeyCacheSize = &size
	}
	if v, ok := d.GetOk("sync_interval"); ok {
		interval := time.Duration(v.(int)) * time.Second
		if interval < 0 {
			return nil, callerErrorf("sync_interval must be 0 (off) or more, e.g. 10m")
		}
		cfg.SyncInterval = &interval
	}
	for field, target := range map[string]*int{"rate_limit_per_minute": &cfg.RateLimitPerMinute, "rate_limit_per_hour": &cfg.RateLimitPerHour} {
		if v, ok := d.GetOk(field); ok {
			*target = v.(int)
			if *target < 1 {
				return nil, callerErrorf("%s must be at least 1: the platform's limit for this token (250 a minute and 5000 an hour unless DigitalOcean raised them)", field)
			}
		}
	}
	if v, ok := d.GetOk("scheduler_headroom_percent"); ok {
		headroom := v.(int)
		if headroom < 0 || headroom > 90 {
			return nil, callerErrorf("scheduler_headroom_percent must be 0 to 90: the share of the rate budget that scheduled rotations and the periodic sync always leave to requests")
		}
		cfg.SchedulerHeadroomPercent = &headroom
	}
	if err := mergeAdminKeys(cfg, d); err != nil {
		return nil, err
	}
	if v, ok := d.GetOk("openai_project_ids"); ok {
		ids, err := parseOpenAIProjectIDs(v.([]string))
		if err != nil {
			return nil, err
		}
		cfg.OpenAIProjectIDs = ids
	}
	return cfg, nil
}

// schedulerHeadroom is the stored headroom, or the default.
func (c *gradientConfig) schedulerHeadroom() int {
	if c.SchedulerHeadroomPercent == nil {
		return platform.DefaultSchedulerHeadroomPercent
	}
	return *c.SchedulerHeadroomPercent
}

// orDefault reads a stored number that older configs lack.
func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// validateBaseURL accepts absolute http(s) URLs without user info, query or
// fragment, and api_url without a path. A URL with credentials in it would
// put a secret in the stored config's plain fields.
func validateBaseURL(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return callerErrorf("%s must be an absolute http or https URL, e.g. https://api.example.com", field)
	}
	if u.User != nil {
		return callerErrorf("%s must not contain user info; the token goes in the token field", field)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return callerErrorf("%s must not have a query or fragment", field)
	}
	// godo addresses the platform from the host root ("/v2/..."), so a path
	// in api_url would be dropped without a word. The provider URLs may keep
	// theirs: the verifier appends to them.
	if p := u.EscapedPath(); field == "api_url" && p != "" && p != "/" {
		return callerErrorf("api_url must not have a path: the DigitalOcean API is addressed from the host root, e.g. https://api.digitalocean.com")
	}
	return nil
}

func (b *gradientBackend) handleConfigDelete(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	if err := req.Storage.Delete(ctx, configPath); err != nil {
		return nil, fmt.Errorf("deleting the configuration: %w", err)
	}
	b.dropClients()
	b.keyCache.resize(0)
	return nil, nil
}

func getConfig(ctx context.Context, s logical.Storage) (*gradientConfig, error) {
	entry, err := s.Get(ctx, configPath)
	if err != nil {
		return nil, fmt.Errorf("reading the configuration: %w", err)
	}
	if entry == nil {
		return nil, nil
	}
	cfg := &gradientConfig{}
	if err := entry.DecodeJSON(cfg); err != nil {
		return nil, fmt.Errorf("decoding the configuration: %w", err)
	}
	return cfg, nil
}

const configHelpSynopsis = "Configure the DigitalOcean token and the platform and provider endpoints."

const configHelpDescription = `The token needs the genai read, create, update and delete scopes; a write
checks it with one platform call and saves nothing if the platform rejects
it. Reads return every field but the token, plus token_set.

api_url, anthropic_url and openai_url default to the public APIs; point them
at the project's emulator for development. verify_keys (default true) checks
each key with its provider before it is pushed. name_cache_ttl bounds how
often creates list the platform's key names to refuse duplicates. creds_ttl
(default 1h) bounds the lease of a creds/<name> read. rate_limit_per_minute
and rate_limit_per_hour are the platform's limits for this token; the mount
paces itself under them. sync_interval (default 10m, 0 off) is how often the
active node compares the platform's keys with the mount (see sync).

openai_admin_key (sk-admin-...) and anthropic_admin_key (sk-ant-admin...)
enable zero-touch rotation: minting OpenAI service-account keys and retiring
replaced keys. Each one written is checked with one admin read; neither is
ever returned (reads show openai_admin_key_set and anthropic_admin_key_set).
openai_project_ids, when set, are the only OpenAI projects keys may mint
into; empty, any project the admin key reaches.`

// credsTTL is the configured creds lease bound, or the default.
func (c *gradientConfig) credsTTL() time.Duration {
	if c.CredsTTL > 0 {
		return c.CredsTTL
	}
	return defaultCredsTTL
}

// The providers' admin keys on config: what zero-touch rotation (zero_touch.go,
// retire.go) calls the Admin APIs with. They are stored in the seal-wrapped
// config beside the token, never returned (reads say *_set), and each one
// given is checked with one cheap admin read before anything is saved.

var (
	openAIAdminKeyField = &framework.FieldSchema{
		Type:         framework.TypeString,
		Description:  `OpenAI admin key (sk-admin-...) with which keys/<name> with source=openai-service-account mint and retire service-account keys; sent to openai_url. Checked with one admin read on write; never returned. "" removes it.`,
		DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
	}
	anthropicAdminKeyField = &framework.FieldSchema{
		Type:         framework.TypeString,
		Description:  `Anthropic admin key (sk-ant-admin...) with which replaced Anthropic keys are set inactive when retire_previous is on; sent to anthropic_url. Checked with one admin read on write; never returned. "" removes it.`,
		DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
	}
)

// mergeAdminKeys takes the admin keys a config write gives. Messages never
// include a key.
func mergeAdminKeys(cfg *gradientConfig, d *framework.FieldData) error {
	for provider, target := range map[string]*string{platform.OpenAI: &cfg.OpenAIAdminKey, platform.Anthropic: &cfg.AnthropicAdminKey} {
		field := adminKeyField(provider)
		v, ok := d.GetOk(field)
		if !ok {
			continue
		}
		key := strings.TrimSpace(v.(string))
		if key != "" {
			if strings.IndexFunc(key, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
				return callerErrorf("%s must not contain white space or control characters; check that it was copied whole", field)
			}
			if prefix := providers.AdminPrefix(provider); !strings.HasPrefix(key, prefix) || len(key) <= len(prefix) {
				return callerErrorf("%s does not look like an admin key: it must start with %q (a model key cannot use the Admin API)", field, prefix)
			}
			if len(key) > maxKeyLength {
				return callerErrorf("%s is %d characters long; admin keys are at most %d", field, len(key), maxKeyLength)
			}
		}
		*target = key
	}
	return nil
}

// checkAdminKeys makes one cheap admin read with each admin key the write
// gives: a key the provider rejects is a 400, and nothing is saved.
func checkAdminKeys(ctx context.Context, c *clients, d *framework.FieldData) error {
	keys := map[string]string{platform.OpenAI: c.config.OpenAIAdminKey, platform.Anthropic: c.config.AnthropicAdminKey}
	for _, provider := range []string{platform.OpenAI, platform.Anthropic} {
		field := adminKeyField(provider)
		if _, given := d.GetOk(field); !given || keys[provider] == "" {
			continue
		}
		if err := c.admin.CheckAdminKey(ctx, provider); err != nil {
			if isCallerError(err) {
				return callerErrorf("%s; nothing was saved", err.Error())
			}
			return fmt.Errorf("checking %s with the provider (nothing was saved): %w", field, err)
		}
	}
	return nil
}

// adminKeyField is the config field of the provider's admin key.
func adminKeyField(provider string) string { return provider + "_admin_key" }
