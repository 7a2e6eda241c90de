package backend

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/providers"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Zero-touch rotation, OpenAI side: a key with source=openai-service-account
// gets each new secret from a service account the plugin creates in the
// key's OpenAI project. Minting takes makeChange's road like every platform
// change: the write-ahead log entry (with the account's name, chosen in
// advance from the key's name and version) comes first, then the account is
// created, its key verified and pushed to the same platform key, and only
// the account's id is stored with the version it serves, never its key
// outside the sealed api_key.

const (
	sourceStaged                = "staged"
	sourceOpenAIServiceAccount  = "openai-service-account"
	walKindMint                 = "mint-key"
	defaultGracePeriod          = time.Hour
	serviceAccountNamePrefix    = "vault-"
	maxOpenAIProjectIDLength    = 64
	openAIProjectIDRuleForUsers = `an OpenAI project id such as "proj_abc123" (letters, digits, "_" and "-")`
)

// maxGracePeriod bounds grace_period: a month covers a consumer that renews
// its lease monthly, and keeps the replaced keys a rotation schedule leaves
// working (and, minted, their live service accounts) few. Entries stored
// with a longer one before the bound keep it: it was promised to their
// consumers, and maxPendingRetirements bounds what it can pile up.
const maxGracePeriod = 30 * 24 * time.Hour

var openAIProjectIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

var (
	sourceField = &framework.FieldSchema{
		Type:          framework.TypeString,
		Description:   `Where the key's next secrets come from: "staged" (default: api_key or next_api_key, given by a person) or "openai-service-account" (the plugin mints each one as an OpenAI service account in openai_project_id, with config's openai_admin_key; api_key may then be left out on create).`,
		AllowedValues: []any{sourceStaged, sourceOpenAIServiceAccount},
	}
	openAIProjectIDField = &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: "With source=openai-service-account: the OpenAI project the service accounts are created in. Required for that source.",
	}
	gracePeriodField = &framework.FieldSchema{
		Type:        framework.TypeDurationSecond,
		Description: "How long a replaced key keeps working after a rotation before it is retired at its provider (when retire_previous is on); default 1h, at most 720h (30 days); 0 retires at the next scheduler tick.",
	}
	retirePreviousField = &framework.FieldSchema{
		Type:        framework.TypeBool,
		Description: "Retire the replaced key at its provider after grace_period: always on for minted keys; for Anthropic keys it needs config's anthropic_admin_key. Default false.",
	}
)

// parseOpenAIProjectIDs checks config's openai_project_ids: each one a
// project id, duplicates and empty items dropped ("" clears the list).
func parseOpenAIProjectIDs(raw []string) ([]string, error) {
	var ids []string
	for _, id := range raw {
		id = strings.TrimSpace(id)
		switch {
		case id == "" || slices.Contains(ids, id):
			continue
		case len(id) > maxOpenAIProjectIDLength || !openAIProjectIDPattern.MatchString(id):
			return nil, callerErrorf("openai_project_ids must be a comma-separated list of project ids, each %s", openAIProjectIDRuleForUsers)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// allowsOpenAIProject reports whether keys may mint into project: config's
// openai_project_ids lists it, or lists nothing.
func (c *gradientConfig) allowsOpenAIProject(project string) bool {
	return len(c.OpenAIProjectIDs) == 0 || slices.Contains(c.OpenAIProjectIDs, project)
}

// mints reports whether the plugin mints the key's next secrets.
func (k *keyEntry) mints() bool { return k.Source == sourceOpenAIServiceAccount }

// retiresPrevious: always for minted keys, else as set.
func (k *keyEntry) retiresPrevious() bool { return k.mints() || k.RetirePrevious }

func (k *keyEntry) gracePeriod() time.Duration {
	if k.GracePeriod == nil {
		return defaultGracePeriod
	}
	return *k.GracePeriod
}

// zeroTouchWrite is what one write of keys/<name> asks for about zero-touch
// rotation, parsed but not yet applied; nil fields were not given.
type zeroTouchWrite struct {
	source    *string
	projectID *string
	grace     *time.Duration
	retire    *bool
	// serviceAccountID (and its project) is set by mintFirst for the
	// first version.
	serviceAccountID, serviceAccountProject string
}

func parseZeroTouchWrite(d *framework.FieldData) (zeroTouchWrite, error) {
	var w zeroTouchWrite
	if v, ok := d.GetOk("source"); ok {
		s := v.(string)
		if s == "" {
			s = sourceStaged
		}
		if s != sourceStaged && s != sourceOpenAIServiceAccount {
			return w, callerErrorf(`source must be %q or %q`, sourceStaged, sourceOpenAIServiceAccount)
		}
		w.source = &s
	}
	if v, ok := d.GetOk("openai_project_id"); ok {
		p := strings.TrimSpace(v.(string))
		if p != "" && (len(p) > maxOpenAIProjectIDLength || !openAIProjectIDPattern.MatchString(p)) {
			return w, callerErrorf("openai_project_id must be %s", openAIProjectIDRuleForUsers)
		}
		w.projectID = &p
	}
	if v, ok := d.GetOk("grace_period"); ok {
		g := time.Duration(v.(int)) * time.Second // the SDK refuses what overflows
		if g < 0 || g > maxGracePeriod {
			return w, callerErrorf("grace_period must be between 0 and %dh (30 days, %d seconds), e.g. 1h; 0 retires the replaced key at the next scheduler tick",
				int(maxGracePeriod.Hours()), int(maxGracePeriod/time.Second))
		}
		w.grace = &g
	}
	if v, ok := d.GetOk("retire_previous"); ok {
		r := v.(bool)
		w.retire = &r
	}
	return w, nil
}

// given reports whether the write named any zero-touch field.
func (w zeroTouchWrite) given() bool {
	return w.source != nil || w.projectID != nil || w.grace != nil || w.retire != nil
}

// apply writes the parsed settings into k.
func (w zeroTouchWrite) apply(k *keyEntry) {
	if w.source != nil {
		k.Source = *w.source
		if k.Source == sourceStaged {
			k.Source = ""
		}
	}
	if w.projectID != nil {
		k.OpenAIProjectID = *w.projectID
	}
	if w.grace != nil {
		g := *w.grace
		k.GracePeriod = &g
	}
	if w.retire != nil {
		k.RetirePrevious = *w.retire
	}
	if w.serviceAccountID != "" {
		k.ServiceAccountID, k.ServiceAccountProjectID = w.serviceAccountID, w.serviceAccountProject
	}
}

// check refuses settings the entry k (with the write applied) cannot work
// with, and asks OpenAI whether a project given now exists.
func (w zeroTouchWrite) check(ctx context.Context, c *clients, k *keyEntry) error {
	if k.mints() {
		if k.Provider != platform.OpenAI {
			return callerErrorf("source=%s mints OpenAI keys; an %s key can only be staged", sourceOpenAIServiceAccount, k.Provider)
		}
		if k.OpenAIProjectID == "" {
			return callerErrorf("source=%s needs openai_project_id: the OpenAI project the service accounts are created in", sourceOpenAIServiceAccount)
		}
		if c.config.OpenAIAdminKey == "" {
			return callerErrorf("source=%s needs an OpenAI admin key: write openai_admin_key to config first", sourceOpenAIServiceAccount)
		}
		if w.retire != nil && !*w.retire {
			return callerErrorf("retire_previous is always true for minted keys: a replaced service account is deleted after grace_period")
		}
	}
	if k.RetirePrevious && !k.mints() {
		switch {
		case k.Provider == platform.OpenAI:
			return callerErrorf("retire_previous works for OpenAI keys only with source=%s: OpenAI keys a person made cannot be found and retired by software", sourceOpenAIServiceAccount)
		case c.config.AnthropicAdminKey == "":
			return callerErrorf("retire_previous needs an Anthropic admin key: write anthropic_admin_key to config first")
		}
	}
	// A project named now, or the one a key now switching to minting
	// names, must be one config allows: otherwise any holder of write on
	// a key could mint into every project the admin key reaches.
	if p := k.OpenAIProjectID; p != "" && (w.projectID != nil || (w.source != nil && k.mints())) && !c.config.allowsOpenAIProject(p) {
		return callerErrorf("openai_project_id %q is not in config's openai_project_ids, the OpenAI projects this mount may mint into: use one of them, or ask an operator to add the project there", p)
	}
	if k.mints() && (w.projectID != nil || w.source != nil) {
		err := c.admin.GetProject(ctx, k.OpenAIProjectID)
		if errors.Is(err, providers.ErrNotFound) {
			return callerErrorf("OpenAI has no project %q that openai_admin_key can see; check openai_project_id", k.OpenAIProjectID)
		}
		if errors.Is(err, providers.ErrProjectArchived) {
			return callerErrorf("OpenAI project %q is archived, and OpenAI makes no service accounts in an archived project: set openai_project_id to an active project; nothing was changed", k.OpenAIProjectID)
		}
		if err != nil {
			return fmt.Errorf("checking openai_project_id with OpenAI: %w", err)
		}
	}
	return nil
}

// applyZeroTouchWrite parses, applies and checks the zero-touch fields of an
// update into k (a copy the caller stores).
func (b *gradientBackend) applyZeroTouchWrite(ctx context.Context, s logical.Storage, d *framework.FieldData, k *keyEntry) error {
	w, err := parseZeroTouchWrite(d)
	if err != nil || !w.given() {
		return err
	}
	w.apply(k)
	c, err := b.clients(ctx, s)
	if err != nil {
		return err
	}
	return w.check(ctx, c, k)
}

// addZeroTouchFields adds the zero-touch settings and the retirement state
// to a key response: ids and hints, never a key.
func addZeroTouchFields(data map[string]any, k *keyEntry) {
	source := k.Source
	if source == "" {
		source = sourceStaged
	}
	data["source"] = source
	data["openai_project_id"] = k.OpenAIProjectID
	data["service_account_id"] = k.ServiceAccountID
	data["grace_period"] = int64(k.gracePeriod().Seconds())
	data["retire_previous"] = k.retiresPrevious()
	status := k.RetireStatus
	if status == "" {
		status = retireNone
	}
	data["retire_status"] = status
	data["retire_error"] = k.RetireError
	data["retirements_pending"] = len(k.Retiring)
}

// serviceAccountName is the name of the account that mints version of the
// key name: chosen before the create, so a rollback finds it by name when the
// create's answer was lost.
func serviceAccountName(name string, version int) string {
	return fmt.Sprintf("%s%s-v%d", serviceAccountNamePrefix, name, version)
}

// ---- the write-ahead log entry ----

// mintWAL: a service account named AccountName was being minted in
// ProjectID for key Name; with UUID set, its key was being pushed to that
// platform key while storage held Version. The undo pushes the stored secret
// back, then deletes every account with that name that no stored version
// references.
type mintWAL struct {
	walHeader
	Name        string `json:"name"`
	UUID        string `json:"uuid,omitempty"`
	Version     int    `json:"version"`
	ProjectID   string `json:"project_id"`
	AccountName string `json:"account_name"`
	// AccountID is known only in memory, once OpenAI answered; refused
	// says OpenAI refused the create outright, so nothing changed.
	AccountID string `json:"-"`
	refused   bool
}

func (w *mintWAL) kind() string                  { return walKindMint }
func (w *mintWAL) lockScope() ([]string, string) { return []string{w.Name}, w.UUID }
func (w *mintWAL) undone() string {
	return "the stored secret stays on the platform and the service account minted for it was deleted"
}
func (w *mintWAL) describe() []any {
	return []any{"name", w.Name, "uuid", w.UUID, "version", w.Version, "openai_project_id", w.ProjectID, "service_account_name", w.AccountName}
}

// undo puts the platform back on the stored secret (unless storage holds a
// later version: the mint completed), and only then deletes the accounts
// this mint can have made: deleting one whose key the platform may still
// use would cut the agents off.
func (w *mintWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	c, err := b.clients(ctx, s)
	if err != nil {
		return fmt.Errorf("rolling back the mint of %q: %w", w.Name, err)
	}
	if w.UUID != "" {
		stored, err := findKeyByUUID(ctx, s, w.UUID)
		if err != nil {
			return err
		}
		if stored != nil && stored.Version <= w.Version {
			if _, err := c.platform.UpdateKey(ctx, platform.OpenAI, w.UUID, platform.KeyChange{Secret: stored.APIKey}); err != nil && !errors.Is(err, platform.ErrNotFound) {
				return fmt.Errorf("rolling back the mint of %q: pushing the stored secret back: %w", w.Name, err)
			}
		}
	}
	referenced, err := referencedServiceAccounts(ctx, s)
	if err != nil {
		return err
	}
	candidates := map[string]bool{}
	if w.AccountID != "" {
		candidates[w.AccountID] = true
	}
	accounts, err := c.admin.ListServiceAccounts(ctx, w.ProjectID)
	if err != nil && !errors.Is(err, providers.ErrNotFound) {
		return fmt.Errorf("rolling back the mint of %q: %w", w.Name, err)
	}
	for _, a := range accounts {
		if a.Name == w.AccountName {
			candidates[a.ID] = true
		}
	}
	for id := range candidates {
		if referenced[id] {
			continue // a stored version's: the mint completed, or a later one did
		}
		if err := c.admin.DeleteServiceAccount(ctx, w.ProjectID, id); err != nil && !errors.Is(err, providers.ErrNotFound) {
			return fmt.Errorf("rolling back the mint of %q: deleting service account %s: %w", w.Name, id, err)
		}
		b.Logger().Warn("deleted a service account minted by an incomplete rotation", "name", w.Name, "service_account_id", id, "openai_project_id", w.ProjectID)
	}
	return nil
}

// referencedServiceAccounts are the accounts some stored entry holds: the
// current version's, or one waiting for retirement.
func referencedServiceAccounts(ctx context.Context, s logical.Storage) (map[string]bool, error) {
	refs := map[string]bool{}
	err := forEachKey(ctx, s, func(k *keyEntry) error {
		for _, u := range k.secretUses() {
			if u.serviceAccountID != "" {
				refs[u.serviceAccountID] = true
			}
		}
		return nil
	})
	return refs, err
}

// ---- minting ----

// mintAccount creates the account named in w and verifies its key.
func (b *gradientBackend) mintAccount(ctx context.Context, c *clients, w *mintWAL) (providers.MintedAccount, error) {
	acct, err := c.admin.CreateServiceAccount(ctx, w.ProjectID, w.AccountName)
	w.AccountID, w.refused = acct.ID, err != nil && providers.IsRefusal(err)
	if err != nil && w.refused && projectArchived(ctx, c, w.ProjectID) {
		// Archived since the key was written: permanent, so a caller
		// error (the scheduler waits for the next period, not minutes).
		stays := "the current key stays"
		if w.UUID == "" {
			stays = "nothing was changed" // the first version: no key yet
		}
		return providers.MintedAccount{}, callerErrorf("key %q mints into OpenAI project %q, which is archived: OpenAI makes no service accounts there, so nothing was minted and %s; set the key's openai_project_id to an active project", w.Name, w.ProjectID, stays)
	}
	if err != nil {
		return providers.MintedAccount{}, fmt.Errorf("minting a key: %w", err)
	}
	if err := c.verifier.Verify(ctx, platform.OpenAI, acct.APIKey); err != nil {
		return providers.MintedAccount{}, fmt.Errorf("the freshly minted key failed verification: %w", err)
	}
	return acct, nil
}

// projectArchived asks OpenAI, after it refused a service account, whether
// the project is archived: one more Admin API call on that failure only,
// none on a mint that works.
func projectArchived(ctx context.Context, c *clients, projectID string) bool {
	return errors.Is(c.admin.GetProject(ctx, projectID), providers.ErrProjectArchived)
}

// mintNext mints the key's next secret and pushes it to the same platform
// key: the minting twin of rotateSecret. k is a copy with the rotation
// bookkeeping set (recordRotation); on an error the caller discards it.
func (b *gradientBackend) mintNext(ctx context.Context, s logical.Storage, k *keyEntry) error {
	c, err := b.clients(ctx, s)
	if err != nil {
		return err
	}
	if c.config.OpenAIAdminKey == "" {
		return callerErrorf("key %q mints its secrets but config has no openai_admin_key: write one to config", k.Name)
	}
	// The list may have narrowed since the key was written: a mint into a
	// project it no longer lists is refused, and the current key stays.
	if !c.config.allowsOpenAIProject(k.OpenAIProjectID) {
		return callerErrorf("key %q mints into OpenAI project %q, which config's openai_project_ids no longer lists: nothing was minted and the current key stays; set the key's openai_project_id to a listed project, or ask an operator to add the project to openai_project_ids", k.Name, k.OpenAIProjectID)
	}
	w := &mintWAL{
		walHeader: walHeader{Provider: platform.OpenAI, Created: b.now().UTC()},
		Name:      k.Name, UUID: k.UUID, Version: k.Version, ProjectID: k.OpenAIProjectID,
		AccountName: serviceAccountName(k.Name, k.Version+1),
	}
	var minted providers.MintedAccount
	return b.makeChange(ctx, s, pendingChange{
		entry: w,
		// Creating the account is a change of its own: any failure after
		// it needs the undo.
		multiStep: true,
		unchanged: func() bool { return w.refused },
		apply: func(ctx context.Context) error {
			var err error
			if minted, err = b.mintAccount(ctx, c, w); err != nil {
				return err
			}
			pk, err := c.platform.UpdateKey(ctx, k.Provider, k.UUID, platform.KeyChange{Secret: minted.APIKey})
			if err != nil {
				return keyGoneIfNotFound(err, k)
			}
			k.UpdatedAt = pk.UpdatedAt
			return nil
		},
		commit: func(ctx context.Context) error {
			k.APIKey = minted.APIKey
			k.Version++
			k.ServiceAccountID, k.ServiceAccountProjectID = minted.ID, w.ProjectID
			return putKey(ctx, s, k)
		},
	})
}

// rotateOrMint rotates k (a copy with recordRotation applied) to apiKey, or
// mints its next secret when apiKey is "" (callers allow that only for a
// minted key).
func (b *gradientBackend) rotateOrMint(ctx context.Context, s logical.Storage, k *keyEntry, apiKey string) error {
	if apiKey == "" {
		return b.mintNext(ctx, s, k)
	}
	return b.rotateSecret(ctx, s, k, apiKey)
}

// mintFirst mints the first secret of a key created without api_key, then
// creates (or adopts) the platform key with it through createKey's own road.
func (b *gradientBackend) mintFirst(ctx context.Context, s logical.Storage, c *clients, r createRequest) (*keyEntry, error) {
	if r.adoptUUID == "" {
		// Refuse a taken name before minting for nothing.
		if err := b.refuseDuplicateName(ctx, c, r.provider, r.name, ""); err != nil {
			return nil, err
		}
	}
	w := &mintWAL{
		walHeader: walHeader{Provider: platform.OpenAI, Created: b.now().UTC()},
		Name:      r.name, ProjectID: *r.zeroTouch.projectID, AccountName: serviceAccountName(r.name, 1),
	}
	var k *keyEntry
	err := b.makeChange(ctx, s, pendingChange{
		entry:     w,
		multiStep: true,
		unchanged: func() bool { return w.refused },
		apply: func(ctx context.Context) error {
			minted, err := b.mintAccount(ctx, c, w)
			if err != nil {
				return err
			}
			r.apiKey = minted.APIKey
			r.zeroTouch.serviceAccountID, r.zeroTouch.serviceAccountProject = minted.ID, w.ProjectID
			if r.adoptUUID != "" {
				k, err = b.adoptKey(ctx, s, c, r)
			} else {
				k, err = b.createKey(ctx, s, c, r)
			}
			return err
		},
	})
	return k, err
}
