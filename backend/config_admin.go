package backend

import (
	"context"
	"fmt"
	"strings"
	"unicode"

	"github.com/hashicorp/vault/sdk/framework"
)

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

// adminKeyPrefixes are the shapes of the providers' admin keys.
var adminKeyPrefixes = map[string]string{
	"openai_admin_key":    "sk-admin-",
	"anthropic_admin_key": "sk-ant-admin",
}

// mergeAdminKeys takes the admin keys a config write gives. Messages never
// include a key.
func mergeAdminKeys(cfg *gradientConfig, d *framework.FieldData) error {
	for field, target := range map[string]*string{"openai_admin_key": &cfg.OpenAIAdminKey, "anthropic_admin_key": &cfg.AnthropicAdminKey} {
		v, ok := d.GetOk(field)
		if !ok {
			continue
		}
		key := strings.TrimSpace(v.(string))
		if key != "" {
			if strings.IndexFunc(key, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
				return callerErrorf("%s must not contain white space or control characters; check that it was copied whole", field)
			}
			if prefix := adminKeyPrefixes[field]; !strings.HasPrefix(key, prefix) || len(key) <= len(prefix) {
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
	for _, p := range []struct{ field, provider, key string }{
		{"openai_admin_key", providerOpenAI, c.config.OpenAIAdminKey},
		{"anthropic_admin_key", providerAnthropic, c.config.AnthropicAdminKey},
	} {
		if _, given := d.GetOk(p.field); !given || p.key == "" {
			continue
		}
		if err := c.admin.CheckAdminKey(ctx, p.provider); err != nil {
			if isCallerError(err) {
				return callerErrorf("%s; nothing was saved", err.Error())
			}
			return fmt.Errorf("checking %s with the provider (nothing was saved): %w", p.field, err)
		}
	}
	return nil
}
