package backend

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Rename has its own prefix, rename/<name>, because Vault matches root
// (sudo) paths only exactly or by a trailing "*": keys/*/rename could not be
// made sudo-only without making every key path sudo-only.
func pathRename(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "rename/" + framework.MatchAllRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "key"},
		Fields: map[string]*framework.FieldSchema{
			"name":     {Type: framework.TypeString, Description: "Current name of the key."},
			"new_name": {Type: framework.TypeString, Description: "New name: " + nameRule + ".", Required: true},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: changeOperation(answered(b.handleRename), "Rename a key on the platform and in Vault. Needs sudo.", "rename", map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: keyResponseFields}}}),
		},
		HelpSynopsis:    renameHelpSynopsis,
		HelpDescription: renameHelpDescription,
	}
}

func (b *gradientBackend) handleRename(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, newName, err := parseNamePair(d, "new_name", "new_name is required", "new_name is the current name")
	if err != nil {
		return nil, err
	}
	defer b.lockNames(name, newName)()

	k, err := getExistingKey(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	defer b.lockUUID(k.UUID)()
	if err := validateNameAgainstKey(newName, k.APIKey); err != nil {
		return nil, fmt.Errorf("new_name: %w", err)
	}
	if existing, err := getKey(ctx, req.Storage, newName); err != nil {
		return nil, err
	} else if existing != nil {
		return nil, callerErrorf("a key named %q already exists; delete or rename it first", newName)
	}
	c, err := b.clients(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	renamed, err := b.renameKey(ctx, req.Storage, c, k, newName)
	if err != nil {
		return nil, err
	}
	b.rotation.unschedule(name)
	b.rotation.track(renamed)
	b.Logger().Info("key renamed", "from", name, "to", newName, "uuid", k.UUID)
	return keyResponse(renamed), nil
}

const renameHelpSynopsis = "Rename a key, on the platform and in Vault. Needs sudo."

const renameHelpDescription = `Renames the platform key (same uuid, agents unaffected) and moves the Vault
entry to new_name; the old name then reads as not found. An existing target
name or a bad new name is refused.

Rename moves a key from one name prefix to another, which a path ACL on the
source cannot see, so the path is sudo-protected: grant it only to
administrators, and restrict new_name with allowed_parameters where a team
may rename within its own prefix.`
