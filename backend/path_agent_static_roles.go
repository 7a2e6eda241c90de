package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// A static role is one agent API key that Vault owns and rotates in place:
// for services that read their key once (at start, from a file) and cannot
// follow one key per lease. The key keeps its uuid for life; rotation is the
// platform's regenerate, which gives it a new secret and kills the old one at
// once. agent-static-creds/<name> hands the current secret out under a lease
// that ends at the next rotation.

// agentStaticStoragePrefix holds one entry per static role, seal-wrapped:
// it holds the key's secret.
const agentStaticStoragePrefix = "agent-static/"

// agentStaticPlatformPrefix starts the platform name of every key a static
// role creates, so an operator who sees it in the control panel knows where
// it comes from.
const agentStaticPlatformPrefix = "vault-static-"

// agentStaticEntry is a static role as stored. The rotation fields carry the
// same names and meaning as a key's (keys_storage.go) and are computed by the
// same code (rotation_settings.go, through rotationView).
type agentStaticEntry struct {
	Name      string `json:"name"`
	AgentUUID string `json:"agent_uuid"`
	// AgentName and AgentURL are what the platform said of the agent when
	// the role was last written: shown, and handed to consumers, without
	// a platform call on every read.
	AgentName string `json:"agent_name"`
	AgentURL  string `json:"agent_url"`
	KeyUUID   string `json:"api_key_uuid"`
	KeyName   string `json:"api_key_name"`
	// Secret is the key's current secret, sealed like every key.
	Secret    string    `json:"secret"`
	Version   int       `json:"version"`
	Adopted   bool      `json:"adopted,omitempty"`
	CreatedAt time.Time `json:"created_at"`

	rotationFields
}

// rotationView is the role's rotation state as a key entry, so that the
// schedule arithmetic, the settings parser and the scheduler's bookkeeping
// are the keys' own code, not a copy. Only the rotation fields are set; the
// view never reaches storage. takeRotation copies them back.
func (r *agentStaticEntry) rotationView() *keyEntry {
	return &keyEntry{
		Name:           r.Name,
		CreatedAt:      r.CreatedAt,
		rotationFields: r.rotationFields,
		// A static role always has something to rotate to: the platform
		// makes the next secret. Marking the view as minting makes a due
		// rotation "due", never "overdue" (nothing to stage).
		Source: sourceOpenAIServiceAccount,
	}
}

func (r *agentStaticEntry) takeRotation(k *keyEntry) {
	r.rotationFields = k.rotationFields
}

// recordStaticRotation sets what a successful rotation changes besides the
// secret and version: its time, no failure, and the next rotation counted
// from now.
func (r *agentStaticEntry) recordStaticRotation(now time.Time) {
	v := r.rotationView()
	v.LastVaultRotation = now
	v.RotationError = ""
	v.resetAttempts()
	v.NextVaultRotation = v.computeNextRotation(now)
	r.takeRotation(v)
}

// agentStaticLock is the name lock of a static role: the keys' lock set,
// under a name no key can have (key names hold no slash), so a key and a
// role of the same name never wait for each other.
func agentStaticLock(name string) string { return agentStaticStoragePrefix + name }

// agentStaticKeyName is the platform name of a key the role creates:
// vault-static-<role>.<8 random hex digits>. The random part, chosen before
// the create, makes the name unique to one create, so a rollback can find
// the key of a create whose answer was lost by its name, and never takes a
// key made by anything else. It follows the platform's name rule.
func agentStaticKeyName(role string) string {
	random := make([]byte, 4)
	_, _ = rand.Read(random) // crypto/rand.Read never fails
	suffix := "." + hex.EncodeToString(random)
	base := role[:min(len(role), maxNameLength-len(agentStaticPlatformPrefix)-len(suffix))]
	return agentStaticPlatformPrefix + strings.TrimRight(base, ".") + suffix
}

func getAgentStatic(ctx context.Context, s logical.Storage, name string) (*agentStaticEntry, error) {
	return getJSON[agentStaticEntry](ctx, s, agentStaticStoragePrefix+name, fmt.Sprintf("static role %q", name))
}

func putAgentStatic(ctx context.Context, s logical.Storage, r *agentStaticEntry) error {
	return putJSON(ctx, s, agentStaticStoragePrefix+r.Name, fmt.Sprintf("static role %q", r.Name), r)
}

func deleteAgentStatic(ctx context.Context, s logical.Storage, name string) error {
	if err := s.Delete(ctx, agentStaticStoragePrefix+name); err != nil {
		return fmt.Errorf("deleting static role %q: %w", name, err)
	}
	return nil
}

// findAgentStaticByKey is the role that holds platform key keyUUID, if any:
// two roles must never hold one key (a rotation by one would kill the
// other's secret). One storage read per role; only adoptions ask.
func findAgentStaticByKey(ctx context.Context, s logical.Storage, keyUUID string) (*agentStaticEntry, error) {
	names, err := s.List(ctx, agentStaticStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing static roles: %w", err)
	}
	for _, name := range names {
		r, err := getAgentStatic(ctx, s, name)
		if err != nil {
			return nil, err
		}
		if r != nil && strings.EqualFold(r.KeyUUID, keyUUID) {
			return r, nil
		}
	}
	return nil, nil
}

// agentKeysOf is the agent API key client of the mount's config.
func (b *gradientBackend) agentKeysOf(ctx context.Context, s logical.Storage) (platform.AgentKeys, error) {
	c, err := b.clients(ctx, s)
	if err != nil {
		return nil, err
	}
	if c.agentKeys == nil {
		return nil, errors.New("this mount's platform client does not manage agent API keys")
	}
	return c.agentKeys, nil
}

func pathAgentStaticRolesList(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "agent-static-roles/?$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "agent-static-roles"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ListOperation: &framework.PathOperation{
				Callback:     answered(b.handleAgentStaticRolesList),
				Summary:      "List the static agent roles.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list"},
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"keys": {Type: framework.TypeStringSlice, Description: "Role names, sorted."},
				}}}},
			},
		},
		HelpSynopsis:    agentStaticRolesListHelpSynopsis,
		HelpDescription: agentStaticRolesListHelpDescription,
	}
}

// pathAgentStaticRoleRotate comes before the catch-all role path: Vault
// routes to the first pattern that matches.
func pathAgentStaticRoleRotate(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "agent-static-roles/" + framework.GenericNameRegex("name") + "/rotate$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "agent-static-role"},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the static role."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: changeOperation(b.changingAgentStatic(b.handleAgentStaticRotate), "Regenerate the role's agent API key now (same key uuid, new secret).", "rotate", map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: agentStaticRoleResponseFields}}}),
		},
		HelpSynopsis:    agentStaticRotateHelpSynopsis,
		HelpDescription: agentStaticRotateHelpDescription,
	}
}

func pathAgentStaticRole(b *gradientBackend) *framework.Path {
	return &framework.Path{
		// Anything matches, so that a bad name gets the naming rule's 400.
		Pattern:      "agent-static-roles/" + framework.MatchAllRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "agent-static-role"},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the static role: " + nameRule + "."},
			"agent_uuid": {
				Type:        framework.TypeString,
				Description: "The agent whose API key the role manages (8-4-4-4-12 hexadecimal digits). Required on create; cannot change.",
			},
			"api_key_uuid": {
				Type:        framework.TypeString,
				Description: "Adopt this existing API key of the agent instead of creating one. Adoption regenerates it at once, so the secret it had stops working. A key a Vault mount made (named vault-static-... or vault-<mark>-...) or a lease holds is refused. Only on create.",
			},
			"rotation_period": {
				Type:        framework.TypeDurationSecond,
				Description: "Regenerate the key this often; at least 1 minute. Counts from the last rotation or from when the setting was written, whichever is later. Mutually exclusive with rotation_schedule; 0 clears it.",
			},
			"rotation_schedule":          rotationScheduleField,
			"rotation_window":            rotationWindowField,
			"disable_automated_rotation": disableRotationField,
		},
		ExistenceCheck: b.agentStaticExists,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.CreateOperation: changeOperation(answered(b.handleAgentStaticWrite), "Create (or adopt) the agent API key of a static role.", "create", map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: agentStaticRoleResponseFields}}}),
			logical.UpdateOperation: changeOperation(answered(b.handleAgentStaticWrite), "Change the rotation settings of a static role.", "update", map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: agentStaticRoleResponseFields}}}),
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.readingAgentStatic(b.handleAgentStaticRead),
				Summary:      "Read a static role; never its secret.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Responses:    map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: agentStaticRoleResponseFields}}},
			},
			logical.DeleteOperation: changeOperation(b.changingAgentStatic(b.handleAgentStaticDelete), "Delete the role's agent API key from the platform, then the role.", "delete", map[int][]framework.Response{http.StatusNoContent: {{Description: "No Content"}}}),
		},
		HelpSynopsis:    agentStaticRoleHelpSynopsis,
		HelpDescription: agentStaticRoleHelpDescription,
	}
}

var agentStaticRoleResponseFields = map[string]*framework.FieldSchema{
	"name":                       {Type: framework.TypeString, Description: "Name of the role.", Required: true},
	"agent_uuid":                 {Type: framework.TypeString, Description: "The agent.", Required: true},
	"agent_name":                 {Type: framework.TypeString, Description: "The agent's name when the role was last written.", Required: true},
	"agent_url":                  {Type: framework.TypeString, Description: "The agent's deployment url when the role was last written; empty while it was not deployed.", Required: true},
	"api_key_uuid":               {Type: framework.TypeString, Description: "UUID of the agent API key; it never changes.", Required: true},
	"api_key_name":               {Type: framework.TypeString, Description: "Name of the agent API key on the platform.", Required: true},
	"adopted":                    {Type: framework.TypeBool, Description: "The key existed before the role and was adopted.", Required: true},
	"version":                    {Type: framework.TypeInt, Description: "Version of the secret: 1 when created or adopted, one more per rotation.", Required: true},
	"rotation_period":            {Type: framework.TypeDurationSecond, Description: "Rotation period in seconds; 0 when none.", Required: true},
	"rotation_schedule":          {Type: framework.TypeString, Description: "Cron schedule (UTC); empty when none.", Required: true},
	"rotation_window":            {Type: framework.TypeDurationSecond, Description: "Rotation window in seconds, with rotation_schedule.", Required: true},
	"disable_automated_rotation": {Type: framework.TypeBool, Description: "Scheduled rotation is paused.", Required: true},
	"last_vault_rotation":        {Type: framework.TypeTime, Description: "When Vault last regenerated the key, or created or adopted it.", Required: true},
	"next_vault_rotation":        {Type: framework.TypeTime, Description: "When the next scheduled rotation is due; absent when none."},
	"ttl":                        {Type: framework.TypeInt, Description: "Seconds until the next scheduled rotation; 0 when none is set or it is due.", Required: true},
	"rotation_status":            {Type: framework.TypeString, Description: "ok, due or failed (see rotation_error).", Required: true},
	"rotation_error":             {Type: framework.TypeString, Description: "Why the last scheduled rotation failed; empty after a success.", Required: true},
}

func (b *gradientBackend) agentStaticExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	name := d.Get("name").(string)
	if validateName(name) != nil {
		return false, nil
	}
	r, err := getAgentStatic(ctx, req.Storage, name)
	return r != nil, err
}

func (b *gradientBackend) handleAgentStaticRolesList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, agentStaticStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing static roles: %w", err)
	}
	sort.Strings(names)
	return logical.ListResponse(names), nil
}

// agentStaticHandler handles a request on an existing static role.
type agentStaticHandler func(ctx context.Context, req *logical.Request, d *framework.FieldData, r *agentStaticEntry) (*logical.Response, error)

// readingAgentStatic and changingAgentStatic are readingKey and changingKey
// for static roles: a bad name is a 400 quoting the rule, a missing role a
// 404 (or, for a delete, nothing to do); the changing one holds the role's
// lock from before the read to the end.
func (b *gradientBackend) readingAgentStatic(h agentStaticHandler) framework.OperationFunc {
	return b.onAgentStatic(false, h)
}

func (b *gradientBackend) changingAgentStatic(h agentStaticHandler) framework.OperationFunc {
	return b.onAgentStatic(true, h)
}

func (b *gradientBackend) onAgentStatic(lock bool, h agentStaticHandler) framework.OperationFunc {
	return answered(func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		name := d.Get("name").(string)
		if err := validateName(name); err != nil {
			return nil, err
		}
		if lock {
			defer b.lockNames(agentStaticLock(name))()
		}
		r, err := getAgentStatic(ctx, req.Storage, name)
		switch {
		case err != nil:
			return nil, err
		case r == nil && req.Operation == logical.UpdateOperation:
			return nil, fmt.Errorf("there is no static role named %q: %w", name, logical.ErrNotFound)
		case r == nil:
			return nil, nil
		}
		return h(ctx, req, d, r)
	})
}

func (b *gradientBackend) handleAgentStaticRead(_ context.Context, _ *logical.Request, _ *framework.FieldData, r *agentStaticEntry) (*logical.Response, error) {
	return b.agentStaticResponse(r), nil
}

// agentStaticResponse is what a read shows of a role: never the secret.
func (b *gradientBackend) agentStaticResponse(r *agentStaticEntry) *logical.Response {
	data := map[string]any{
		"name":         r.Name,
		"agent_uuid":   r.AgentUUID,
		"agent_name":   r.AgentName,
		"agent_url":    r.AgentURL,
		"api_key_uuid": r.KeyUUID,
		"api_key_name": r.KeyName,
		"adopted":      r.Adopted,
		"version":      r.Version,
	}
	v := r.rotationView()
	addRotationFields(data, v)
	// A key's staged-key fields mean nothing here.
	for _, field := range []string{"previous_key_hint", "next_key_hint", "next_key_staged_at"} {
		delete(data, field)
	}
	status, ttl := v.rotationState(b.rotation.now())
	data["rotation_status"] = status
	data["ttl"] = ttl
	return &logical.Response{Data: data}
}

// handleAgentStaticWrite: parse and validate, lock, then either change the
// settings of an existing role (one GET, to refresh the agent's name and
// url) or check the agent (one GET) and create or adopt its key through
// makeChange.
func (b *gradientBackend) handleAgentStaticWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := validateName(name); err != nil {
		return nil, err
	}
	agentUUID, err := parseAgentStaticUUID(d, "agent_uuid", "an agent uuid")
	if err != nil {
		return nil, err
	}
	keyUUID, err := parseAgentStaticUUID(d, "api_key_uuid", "an agent API key uuid")
	if err != nil {
		return nil, err
	}
	defer b.lockNames(agentStaticLock(name))()
	current, err := getAgentStatic(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	var view *keyEntry
	if current != nil {
		view = current.rotationView()
	}
	w, err := parseRotationWrite(d, view, "", name, b.tuning.minRotationPeriod)
	if err != nil {
		return nil, err
	}
	if current != nil {
		return b.updateAgentStatic(ctx, req, current, agentUUID, keyUUID, w)
	}

	if agentUUID == "" {
		return nil, callerErrorf("agent_uuid is required: the agent whose API key this role manages")
	}
	ak, err := b.agentKeysOf(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	agent, err := ak.GetAgent(ctx, agentUUID)
	if errors.Is(err, platform.ErrNotFound) {
		return nil, callerErrorf("agent_uuid: there is no agent %s on the platform; nothing was created", agentUUID)
	}
	if err != nil {
		return nil, fmt.Errorf("reading agent %s: %w", agentUUID, err)
	}
	now := b.rotation.now()
	r := &agentStaticEntry{
		Name: name, AgentUUID: agentUUID, AgentName: agent.Name, AgentURL: agent.DeploymentURL,
		CreatedAt: now,
	}
	v := r.rotationView()
	b.rotation.onCreate(v, w)
	r.takeRotation(v)

	if keyUUID != "" {
		if err := b.adoptAgentStatic(ctx, req.Storage, ak, r, keyUUID); err != nil {
			return nil, err
		}
	} else if err := b.createAgentStatic(ctx, req.Storage, ak, r); err != nil {
		return nil, err
	}
	b.rotation.trackAgentStatic(r)
	b.Logger().Info("static role created", "role", name, "agent_uuid", agentUUID, "api_key_uuid", r.KeyUUID, "adopted", r.Adopted)
	return b.agentStaticResponse(r), nil
}

// updateAgentStatic changes the rotation settings of a stored role and
// refreshes what the platform says of its agent (one GET). The agent and
// the key are the role's identity: another one is a new role.
func (b *gradientBackend) updateAgentStatic(ctx context.Context, req *logical.Request, current *agentStaticEntry, agentUUID, keyUUID string, w rotationWrite) (*logical.Response, error) {
	if agentUUID != "" && agentUUID != current.AgentUUID {
		return nil, callerErrorf("agent_uuid cannot change (the role manages a key of agent %s): delete the role and write it again for another agent", current.AgentUUID)
	}
	if keyUUID != "" && keyUUID != strings.ToLower(current.KeyUUID) {
		return nil, callerErrorf("api_key_uuid cannot change (the role manages key %s): delete the role and write it again to adopt another key", current.KeyUUID)
	}
	// The agent's name and url as of this write, as a create records them
	// and agent-roles/ refreshes them: a role written while its agent was
	// not deployed, or before a redeploy, would hand consumers a stale url.
	ak, err := b.agentKeysOf(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	agent, err := ak.GetAgent(ctx, current.AgentUUID)
	if errors.Is(err, platform.ErrNotFound) {
		return nil, callerErrorf("agent %s of static role %q is gone from the platform, and its keys with it; nothing was changed. Delete the role", current.AgentUUID, current.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("reading agent %s (nothing was changed): %w", current.AgentUUID, err)
	}
	updated := *current
	updated.AgentName, updated.AgentURL = agent.Name, agent.DeploymentURL
	v := updated.rotationView()
	w.apply(v, b.rotation.now())
	updated.takeRotation(v)
	if err := putAgentStatic(ctx, req.Storage, &updated); err != nil {
		return nil, err
	}
	b.rotation.trackAgentStatic(&updated)
	return b.agentStaticResponse(&updated), nil
}

// parseAgentStaticUUID reads a uuid field: "" when absent, lower-case when
// canonical, a 400 naming the field otherwise.
func parseAgentStaticUUID(d *framework.FieldData, field, what string) (string, error) {
	raw := strings.TrimSpace(d.Get(field).(string))
	if raw == "" {
		return "", nil
	}
	if !platform.IsUUID(raw) {
		return "", callerErrorf("%s is not %s: it must be 36 characters, 8-4-4-4-12 hexadecimal digits (as the control panel and doctl show it)", field, what)
	}
	return strings.ToLower(raw), nil
}

func (b *gradientBackend) handleAgentStaticRotate(ctx context.Context, req *logical.Request, _ *framework.FieldData, r *agentStaticEntry) (*logical.Response, error) {
	rotated := *r
	rotated.recordStaticRotation(b.rotation.now())
	stored, err := b.regenerateAgentStatic(ctx, req.Storage, &rotated)
	if err != nil {
		return nil, err
	}
	b.rotation.trackAgentStatic(stored)
	b.Logger().Info("static role rotated on request", "role", r.Name, "api_key_uuid", r.KeyUUID, "version", stored.Version)
	return b.agentStaticResponse(stored), nil
}

func (b *gradientBackend) handleAgentStaticDelete(ctx context.Context, req *logical.Request, _ *framework.FieldData, r *agentStaticEntry) (*logical.Response, error) {
	if err := b.deleteAgentStaticEverywhere(ctx, req.Storage, r); err != nil {
		return nil, err
	}
	b.rotation.unschedule(agentStaticLock(r.Name))
	b.Logger().Info("static role deleted", "role", r.Name, "api_key_uuid", r.KeyUUID)
	return nil, nil
}

const agentStaticRolesListHelpSynopsis = "List the static agent roles."

const agentStaticRolesListHelpDescription = "Lists the names of the roles under agent-static-roles/. Each manages one agent API key that Vault rotates in place; agent-static-creds/<name> hands out its secret."

const agentStaticRoleHelpSynopsis = "Manage a static role: one agent API key that Vault owns and rotates in place."

const agentStaticRoleHelpDescription = "Writing a role names an agent (agent_uuid, checked with one platform call) and creates an API key on it named vault-static-<role>.<8 hex digits>, or, with api_key_uuid, adopts one of the agent's existing keys and regenerates it at once so Vault knows its secret (the secret it had stops working); a key that a Vault mount made for its own role or lease, or that a lease holds, is refused. The rotation fields are the ones keys/<name> takes: at each rotation the platform regenerates the key under the same uuid, the old secret stops working at once, and agent-static-creds/<name> serves the new one. A later write changes the rotation settings and refreshes agent_name and agent_url (one GET of the agent; an agent gone is a 400 that changes nothing). Deleting the role deletes the key on the platform (a key already gone counts as deleted). Reads show the agent's name and deployment url as of the last write, and never the secret."

const agentStaticRotateHelpSynopsis = "Regenerate a static role's agent API key now."

const agentStaticRotateHelpDescription = "The platform gives the key a new secret under the same uuid; the old secret stops working at once, so leases of agent-static-creds/<name> end and their renewal is refused. The version goes up by one and the next scheduled rotation counts from now. If the platform's answer is lost, the key is regenerated again at once so that Vault holds a secret that works."
