package backend

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/providers"
)

// Zero-touch rotation, OpenAI side: a key with source=openai-service-account
// gets each new secret from a service account the plugin creates in the
// key's OpenAI project. These are the settings of a key write that ask for
// it; the mint itself, a change down makeChange's road, is in
// change_rotate.go.

const (
	sourceStaged                = "staged"
	sourceOpenAIServiceAccount  = "openai-service-account"
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
