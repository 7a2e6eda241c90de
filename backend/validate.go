package backend

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/providers"
)

// nameRule is quoted in every refusal of a name, so the caller can fix it
// without reading the docs.
const nameRule = `a key name is 1 to 64 characters of lowercase letters, digits, hyphens and periods, with no two periods in a row, is not "." alone, does not start with "sk-", and never contains the API key`

const (
	maxNameLength        = 64
	maxKeyLength         = 1024
	maxDescriptionLength = 1024
)

// validateDescription bounds the free text kept with a key; it is stored
// and returned on every read, so it should not be a document.
func validateDescription(description string) error {
	if len(description) > maxDescriptionLength {
		return callerErrorf("description is %d bytes long; at most %d", len(description), maxDescriptionLength)
	}
	return nil
}

// validateName checks a name on its own. The name is never echoed back: a
// name that breaks the rule may be a pasted key.
func validateName(name string) error {
	if name == "" || len(name) > maxNameLength {
		return callerErrorf("invalid key name (length %d): %s", len(name), nameRule)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return callerErrorf("invalid key name: it contains %s: %s", describeRune(r), nameRule)
		}
	}
	if strings.HasPrefix(name, "sk-") {
		return callerErrorf(`invalid key name: it starts with "sk-", like an API key: %s`, nameRule)
	}
	// Vault's storage refuses any path with ".." in it, as a parent
	// reference; so does this rule, before storage is reached.
	if strings.Contains(name, "..") {
		return callerErrorf(`invalid key name: it contains "..": %s`, nameRule)
	}
	// "." alone is a path's "this folder": Vault's HTTP layer and clients
	// normalize agent-roles/. to agent-roles, and storage would hold it
	// as agent-leases/./. A period anywhere else is a name like any other.
	if name == "." {
		return callerErrorf(`invalid key name: it is "." alone: %s`, nameRule)
	}
	return nil
}

// parseNamePair reads the path's key name and a second key name from field
// (reassign's "to", rename's "new_name"): both follow the rule and differ.
// A refusal of the second names its field.
func parseNamePair(d *framework.FieldData, field, missing, same string) (name, other string, err error) {
	name = d.Get("name").(string)
	other = d.Get(field).(string)
	switch err := validateName(name); {
	case err != nil:
		return "", "", err
	case other == "":
		return "", "", callerErrorf("%s", missing)
	}
	if err := validateName(other); err != nil {
		return "", "", fmt.Errorf("%s: %w", field, err)
	}
	if other == name {
		return "", "", callerErrorf("%s", same)
	}
	return name, other, nil
}

// keyNameSegment matches one path segment as the key name. Every path that
// takes a key name uses it or a pattern wider than it, so a name the rule
// accepts reaches every path of its key; what the rule refuses reaches the
// handler and gets the rule's 400 rather than Vault's "unsupported path".
const keyNameSegment = `(?P<name>[^/]+)`

// parseUUIDField reads the optional uuid field, lower-cased. It is the only
// caller text that goes into a platform URL path besides validated names,
// so only the canonical form passes (platform.IsUUID; the platform client
// checks again before it builds a path). A value that is not one is refused
// without being echoed: it may be a key
// pasted into the wrong field, and error strings reach the audit log in
// plain text.
func parseUUIDField(d *framework.FieldData) (string, error) {
	raw := strings.TrimSpace(d.Get("uuid").(string))
	if raw == "" {
		return "", nil
	}
	if !platform.IsUUID(raw) {
		return "", callerErrorf("uuid is not a platform key uuid: it must be 36 characters, 8-4-4-4-12 hexadecimal digits (as the control panel and doctl show it)")
	}
	return strings.ToLower(raw), nil
}

// validateNameAgainstKey refuses a name that is, or contains, the key: the
// platform shows names in its control panel and in agent listings.
func validateNameAgainstKey(name, apiKey string) error {
	if apiKey != "" && strings.Contains(name, apiKey) {
		return callerErrorf("invalid key name: it contains the API key: %s", nameRule)
	}
	return nil
}

func describeRune(r rune) string {
	switch {
	case r >= 'A' && r <= 'Z':
		return "an upper-case letter"
	case r == '/':
		return "a slash"
	case r == '_':
		return "an underscore"
	case unicode.IsSpace(r):
		return "white space"
	case r > unicode.MaxASCII:
		return "a non-ASCII character"
	default:
		return "a character other than a-z, 0-9, '-' and '.'"
	}
}

// validateProvider accepts exactly the providers the platform has.
func validateProvider(provider string) error {
	switch {
	case providers.Known(provider):
		return nil
	case provider == "":
		return callerErrorf(`provider is required: "anthropic" or "openai"`)
	}
	return callerErrorf(`unknown provider: use "anthropic" or "openai"`)
}

// normalizeAPIKey trims the surrounding white space that `api_key=@file`
// brings and checks the key's shape for its provider. Messages never include
// the key.
func normalizeAPIKey(provider, raw string) (string, error) {
	key := strings.TrimSpace(raw)
	if key == "" {
		return "", callerErrorf("api_key is required: pass the provider's model key, e.g. api_key=@key.txt")
	}
	if len(key) > maxKeyLength {
		return "", callerErrorf("api_key is %d characters long; provider keys are at most %d", len(key), maxKeyLength)
	}
	for _, r := range key {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "", callerErrorf("api_key contains white space or control characters inside it; paste the key alone")
		}
	}
	if err := validateProvider(provider); err != nil {
		return "", err
	}
	// The shapes of keys are the provider table's (internal/providers).
	if err := providers.CheckModelKey(provider, key); err != nil {
		return "", callerErrorf("%s", err)
	}
	return key, nil
}

// keyHint is the last four characters of a key: enough to tell keys apart in
// the control panel, too little to use.
func keyHint(apiKey string) string {
	if len(apiKey) <= 8 {
		return ""
	}
	return apiKey[len(apiKey)-4:]
}
