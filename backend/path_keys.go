package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// pathKeysList lists the managed keys.
func pathKeysList(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "keys/?$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "keys"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ListOperation: &framework.PathOperation{
				Callback:     answered(b.handleKeysList),
				Summary:      "List the names of the managed keys.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list"},
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"keys": {Type: framework.TypeStringSlice, Description: "Key names, sorted."},
				}}}},
			},
		},
		HelpSynopsis:    keysListHelpSynopsis,
		HelpDescription: keysListHelpDescription,
	}
}

// pathKey is keys/<name>: create, read, update and delete of one key.
func pathKey(b *gradientBackend) *framework.Path {
	return &framework.Path{
		// The name matches anything here, slashes and all, so that a bad
		// name reaches the handler and gets a 400 quoting the naming
		// rule instead of a 404 "unsupported path". The agents and
		// reassign paths come first because Vault routes to the first
		// pattern that matches.
		Pattern:      "keys/" + framework.MatchAllRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "key"},
		Fields: map[string]*framework.FieldSchema{
			"name": {
				Type:        framework.TypeString,
				Description: "Name of the key, in Vault and on the platform: " + nameRule + ".",
			},
			"provider": {
				Type:          framework.TypeString,
				Description:   `Provider of the key: "anthropic" or "openai". Required on create; cannot change.`,
				AllowedValues: []any{platform.Anthropic, platform.OpenAI},
			},
			"api_key": {
				Type:         framework.TypeString,
				Description:  "The provider's model API key. Required on create; a new value rotates the secret of the same platform key. Surrounding white space is trimmed.",
				DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
			},
			"description": {
				Type:        framework.TypeString,
				Description: "Free text kept in Vault only.",
			},
			"uuid": {
				Type:        framework.TypeString,
				Description: "Adopt an existing platform key with this uuid (8-4-4-4-12 hexadecimal digits) instead of creating one: it is updated with this name and secret.",
			},
			"force": {
				Type:        framework.TypeBool,
				Description: "On delete: delete even though agents use the key; they lose access to the provider.",
			},
			"rotation_period":            rotationPeriodField,
			"rotation_schedule":          rotationScheduleField,
			"rotation_window":            rotationWindowField,
			"disable_automated_rotation": disableRotationField,
			"next_api_key":               nextAPIKeyField,
			"source":                     sourceField,
			"openai_project_id":          openAIProjectIDField,
			"grace_period":               gracePeriodField,
			"retire_previous":            retirePreviousField,
		},
		ExistenceCheck: b.keyExists,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.CreateOperation: changeOperation(answered(b.handleKeyCreate), "Verify a key with its provider, push it to the platform and store it.", "create", map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: keyResponseFields}}}),
			logical.UpdateOperation: changeOperation(answered(b.handleKeyUpdate), "Rotate the secret of a key (same platform key and uuid) or change its description.", "update", map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: keyResponseFields}}}),
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.readingKey(b.handleKeyRead),
				Summary:      "Read a key's metadata; never the key itself.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Responses:    map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: keyResponseFields}}},
			},
			logical.DeleteOperation: changeOperation(b.changingKey(b.handleKeyDelete), "Delete a key from the platform, then from Vault. Refused while agents use it, unless force=true.", "delete", map[int][]framework.Response{http.StatusNoContent: {{Description: "No Content"}}}),
		},
		HelpSynopsis:    keyHelpSynopsis,
		HelpDescription: keyHelpDescription,
	}
}

// keyResponseFields is what a read of keys/<name> returns: metadata only.
var keyResponseFields = map[string]*framework.FieldSchema{
	"name":        {Type: framework.TypeString, Description: "Name of the key.", Required: true},
	"provider":    {Type: framework.TypeString, Description: "anthropic or openai.", Required: true},
	"uuid":        {Type: framework.TypeString, Description: "UUID of the key on the platform.", Required: true},
	"description": {Type: framework.TypeString, Description: "Free text kept in Vault.", Required: true},
	"created_at":  {Type: framework.TypeTime, Description: "When the platform created the key.", Required: true},
	"updated_at":  {Type: framework.TypeTime, Description: "When the platform last changed the key (its Date Modified).", Required: true},
	"version":     {Type: framework.TypeInt, Description: "1 for the first secret, +1 for every new one.", Required: true},
	"key_hint":    {Type: framework.TypeString, Description: "Last four characters of the key.", Required: true},

	// Rotation (rotation_settings.go).
	"rotation_period":            {Type: framework.TypeDurationSecond, Description: "Rotation period in seconds; 0 when none."},
	"rotation_schedule":          {Type: framework.TypeString, Description: "Cron schedule (UTC); empty when none."},
	"rotation_window":            {Type: framework.TypeDurationSecond, Description: "Rotation window in seconds; 0 when none."},
	"disable_automated_rotation": {Type: framework.TypeBool, Description: "Whether scheduled rotation is paused."},
	"last_vault_rotation":        {Type: framework.TypeTime, Description: "When Vault last rotated the key, or took it in if it never did."},
	"next_vault_rotation":        {Type: framework.TypeTime, Description: "When the next scheduled rotation is due; absent when none is scheduled."},
	"ttl":                        {Type: framework.TypeInt, Description: "Seconds until the next scheduled rotation; 0 when none is set or it is due."},
	"rotation_status":            {Type: framework.TypeString, Description: "ok, due (the staged key is promoted at the next tick), overdue (due, no key staged) or failed (see rotation_error)."},
	"rotation_error":             {Type: framework.TypeString, Description: "Why the last rotation attempt failed; empty after a success."},
	"previous_key_hint":          {Type: framework.TypeString, Description: "Last four characters of the key the last rotation replaced."},
	"next_key_hint":              {Type: framework.TypeString, Description: "Last four characters of the staged key; empty when none is staged."},
	"next_key_staged_at":         {Type: framework.TypeTime, Description: "When the staged key was staged; absent when none is."},

	// Zero-touch rotation (zero_touch.go, retire.go).
	"source":              {Type: framework.TypeString, Description: "staged or openai-service-account."},
	"openai_project_id":   {Type: framework.TypeString, Description: "The OpenAI project minted keys come from; empty when none."},
	"service_account_id":  {Type: framework.TypeString, Description: "The OpenAI service account that minted the current version; empty when it was not minted."},
	"grace_period":        {Type: framework.TypeDurationSecond, Description: "Seconds a replaced key keeps working before it is retired."},
	"retire_previous":     {Type: framework.TypeBool, Description: "Whether replaced keys are retired at their provider."},
	"retire_status":       {Type: framework.TypeString, Description: "none, pending, retrying (see retire_error), retired, or needs_attention (a replaced key that was not touched; see retire_error)."},
	"retire_error":        {Type: framework.TypeString, Description: "Why the last retirement failed or was not attempted; empty otherwise."},
	"retirements_pending": {Type: framework.TypeInt, Description: "Replaced keys waiting for their grace period or a retry."},
	// Drift (sync.go), on reads.
	"sync_status": {Type: framework.TypeString, Description: "in_sync, missing (deleted on the platform), renamed or modified_outside, as of last_synced; repair with keys/<name>/sync."},
	"last_synced": {Type: framework.TypeTime, Description: "When the sync that last compared the key started; absent when none has since Vault took the key in."},
}

func keyResponse(k *keyEntry) *logical.Response {
	resp := &logical.Response{Data: map[string]any{
		"name":        k.Name,
		"provider":    k.Provider,
		"uuid":        k.UUID,
		"description": k.Description,
		"created_at":  k.CreatedAt.Format(time.RFC3339),
		"updated_at":  k.UpdatedAt.Format(time.RFC3339),
		"version":     k.Version,
		"key_hint":    keyHint(k.APIKey),
	}}
	addRotationFields(resp.Data, k)
	addZeroTouchFields(resp.Data, k)
	return resp
}

// keyExists runs before the handler, on every write. A name the rule refuses
// is never looked up: Vault's storage refuses a path with ".." in it, which
// would turn the caller's mistake into a 500. It does not exist, and the
// create handler answers the 400 that quotes the rule.
func (b *gradientBackend) keyExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	name := d.Get("name").(string)
	if validateName(name) != nil {
		return false, nil
	}
	k, err := getKey(ctx, req.Storage, name)
	return k != nil, err
}

func (b *gradientBackend) handleKeysList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, keyStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	sort.Strings(names)
	return logical.ListResponse(names), nil
}

func (b *gradientBackend) handleKeyRead(ctx context.Context, req *logical.Request, _ *framework.FieldData, k *keyEntry) (*logical.Response, error) {
	resp := b.withRotationState(keyResponse(k), k)
	return resp, b.addSyncFields(ctx, req.Storage, resp.Data, k)
}

// createRequest is a validated create.
type createRequest struct {
	name, provider, apiKey, description, adoptUUID string
	rotation                                       rotationWrite
	zeroTouch                                      zeroTouchWrite
	// mint: no api_key was given for a minted key; its first is minted.
	mint bool
}

func parseCreate(d *framework.FieldData) (createRequest, error) {
	r := createRequest{
		name:        d.Get("name").(string),
		provider:    d.Get("provider").(string),
		description: d.Get("description").(string),
	}
	if err := validateName(r.name); err != nil {
		return r, err
	}
	if err := validateProvider(r.provider); err != nil {
		return r, err
	}
	if err := validateDescription(r.description); err != nil {
		return r, err
	}
	uuid, err := parseUUIDField(d)
	if err != nil {
		return r, err
	}
	r.adoptUUID = uuid
	if r.zeroTouch, err = parseZeroTouchWrite(d); err != nil {
		return r, err
	}
	if src := r.zeroTouch.source; src != nil && *src == sourceOpenAIServiceAccount && strings.TrimSpace(d.Get("api_key").(string)) == "" {
		r.mint = true
		return r, nil
	}
	key, err := normalizeAPIKey(r.provider, d.Get("api_key").(string))
	if err != nil {
		return r, err
	}
	r.apiKey = key
	return r, validateNameAgainstKey(r.name, r.apiKey)
}

// handleKeyCreate: validate, verify, push, store. A failure leaves Vault and
// the platform as they were (see makeChange for what an ambiguous platform
// failure means).
func (b *gradientBackend) handleKeyCreate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	r, err := parseCreate(d)
	if err != nil {
		return nil, err
	}
	if r.rotation, err = parseRotationWrite(d, nil, r.provider, r.name, b.tuning.minRotationPeriod); err != nil {
		return nil, err
	}
	defer b.lockNames(r.name)()
	defer b.lockUUID(r.adoptUUID)()

	// The existence check ran before the lock: look again.
	if existing, err := getKey(ctx, req.Storage, r.name); err != nil {
		return nil, err
	} else if existing != nil {
		return nil, callerErrorf("key %q was created meanwhile; write again to update it", r.name)
	}
	c, err := b.clients(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if r.zeroTouch.given() {
		probe := &keyEntry{Provider: r.provider}
		r.zeroTouch.apply(probe)
		if err := r.zeroTouch.check(ctx, c, probe); err != nil {
			return nil, err
		}
	}
	if !r.mint {
		if err := c.verifier.Verify(ctx, r.provider, r.apiKey); err != nil {
			return nil, err
		}
	}

	var k *keyEntry
	if r.mint {
		k, err = b.mintFirst(ctx, req.Storage, c, r)
	} else if r.adoptUUID != "" {
		k, err = b.adoptKey(ctx, req.Storage, c, r)
	} else {
		k, err = b.createKey(ctx, req.Storage, c, r)
	}
	if err != nil {
		return nil, err
	}
	b.rotation.track(k)
	b.Logger().Info("key created", "name", k.Name, "provider", k.Provider, "uuid", k.UUID, "adopted", r.adoptUUID != "")
	return b.withRotationState(keyResponse(k), k), nil
}

// refuseDuplicateName refuses a name that another platform key of the
// provider already has (except the key being adopted or renamed).
func (b *gradientBackend) refuseDuplicateName(ctx context.Context, c *clients, provider, name, exceptUUID string) error {
	uuid, err := b.names.lookup(ctx, c.platform, provider, name, c.config.NameCacheTTL, c.config.RequestTimeout)
	if err != nil {
		return fmt.Errorf("checking the platform for a key with the same name (nothing was pushed): %w", err)
	}
	if uuid != "" && !strings.EqualFold(uuid, exceptUUID) {
		return callerErrorf("the platform already has a %s key named %q (uuid %s); to manage that key with Vault, write again with uuid=%s, or choose another name",
			provider, name, uuid, uuid)
	}
	return nil
}

// handleKeyUpdate rotates the secret in place (same platform key and uuid, so
// the agents that use it keep working) and/or changes the description.
func (b *gradientBackend) handleKeyUpdate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := validateName(name); err != nil {
		return nil, err
	}
	defer b.lockNames(name)()

	k, err := getKey(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return nil, callerErrorf("key %q was deleted meanwhile; write it again to create it", name)
	}
	if v, ok := d.GetOk("provider"); ok && v.(string) != k.Provider {
		return nil, callerErrorf("the provider of key %q is %s and cannot change; create a key under another name instead", name, k.Provider)
	}
	if uuid, err := parseUUIDField(d); err != nil {
		return nil, err
	} else if uuid != "" && uuid != strings.ToLower(k.UUID) {
		return nil, callerErrorf("key %q already manages platform key %s; a managed key cannot adopt another uuid", name, k.UUID)
	}

	updated := *k
	if v, ok := d.GetOk("description"); ok {
		if err := validateDescription(v.(string)); err != nil {
			return nil, err
		}
		updated.Description = v.(string)
	}
	if err := b.applyZeroTouchWrite(ctx, req.Storage, d, &updated); err != nil {
		return nil, err
	}
	if err := b.applyRotationWrite(ctx, req.Storage, d, &updated); err != nil {
		return nil, err
	}
	if raw, ok := d.GetOk("api_key"); ok {
		apiKey, err := normalizeAPIKey(k.Provider, raw.(string))
		if err != nil {
			return nil, err
		}
		if err := validateNameAgainstKey(name, apiKey); err != nil {
			return nil, err
		}
		if apiKey != k.APIKey {
			if err := updated.recordRotation(b.rotation.now()); err != nil {
				return nil, err
			}
			if err := b.rotateSecret(ctx, req.Storage, &updated, apiKey); err != nil {
				return nil, err
			}
			b.rotation.track(&updated)
			b.Logger().Info("key secret rotated", "name", name, "uuid", k.UUID, "version", updated.Version)
			return b.withRotationState(keyResponse(&updated), &updated), nil
		}
	}
	if !reflect.DeepEqual(updated, *k) {
		if err := putKey(ctx, req.Storage, &updated); err != nil {
			return nil, err
		}
		b.rotation.track(&updated)
	}
	return b.withRotationState(keyResponse(&updated), &updated), nil
}

// handleKeyDelete deletes the platform key first, and a minted key's service
// accounts and the Vault entry only after that succeeded, so a failure never
// leaves a platform key Vault forgot nor kills the secret creds/ serves.
// Deleting what is not there is a success, as everywhere in Vault.
func (b *gradientBackend) handleKeyDelete(ctx context.Context, req *logical.Request, d *framework.FieldData, k *keyEntry) (*logical.Response, error) {
	c, err := b.clients(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	agents, err := c.platform.ListAgentsByKey(ctx, k.Provider, k.UUID)
	if err != nil && !errors.Is(err, platform.ErrNotFound) {
		return nil, err
	}
	if len(agents) > 0 && !d.Get("force").(bool) {
		return nil, callerErrorf("key %q is used by %d agent(s): %s. Move them to another key first with: vault write %skeys/%s/reassign to=<other key>; or delete anyway with force=true (those agents lose access to %s). Nothing was changed.",
			k.Name, len(agents), describeAgents(agents), req.MountPoint, k.Name, k.Provider)
	}

	if err := b.deleteKeyEverywhere(ctx, req.Storage, c, k); err != nil {
		return nil, err
	}
	b.rotation.unschedule(k.Name)
	b.Logger().Info("key deleted", "name", k.Name, "uuid", k.UUID, "agents_cut_off", len(agents))
	return nil, nil
}

func describeAgents(agents []platform.Agent) string {
	parts := make([]string, len(agents))
	for i, a := range agents {
		parts[i] = fmt.Sprintf("%s (%s)", a.Name, a.UUID)
	}
	return strings.Join(parts, ", ")
}

const keysListHelpSynopsis = "List the managed provider keys."

const keysListHelpDescription = "Lists the names of the Anthropic and OpenAI keys this mount manages, sorted."

const keyHelpSynopsis = "Manage one provider key: verified with its provider, pushed to the Gradient platform, stored sealed in Vault."

const keyHelpDescription = `Create: provider (anthropic or openai) and api_key are required; the key is
verified with the provider, pushed to the platform under this name, then
stored. With uuid=<platform key uuid> an existing platform key is adopted
instead of creating one. A name another platform key already has is refused.

Update: a new api_key is verified and pushed to the same platform key (same
uuid, so agents keep working) and the version goes up by one; description
can change; provider cannot.

Read: metadata and the last four characters of the key, never the key (read
creds/<name> for that).

Delete: refused while agents use the key, unless force=true; move them first
with keys/<name>/reassign.

Rotation: rotation_period or rotation_schedule (cron, UTC, with an optional
rotation_window) rotate the key on schedule to the successor staged with
next_api_key (verified when staged, never returned);
disable_automated_rotation pauses; reads show last_vault_rotation,
next_vault_rotation, ttl and rotation_status.

Zero-touch rotation: with source=openai-service-account and
openai_project_id (and openai_admin_key on config), api_key may be left out
on create and every rotation with nothing staged mints a new OpenAI
service-account key. retire_previous (always on for minted keys) retires the
replaced key at its provider grace_period (default 1h) after the rotation:
a minted key's service account is deleted; an Anthropic key (with
anthropic_admin_key on config) is set inactive when exactly one key of the
organization matches it. Reads show retire_status and retire_error.

Names: ` + nameRule + "."
