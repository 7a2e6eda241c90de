package backend

import (
	"context"
	"errors"
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
			logical.UpdateOperation: &framework.PathOperation{
				Callback:                    b.pathRename,
				Summary:                     "Rename a key on the platform and in Vault. Needs sudo.",
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "rename"},
				Responses:                   map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: keyResponseFields}}},
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    renameHelpSynopsis,
		HelpDescription: renameHelpDescription,
	}
}

func (b *gradientBackend) pathRename(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	newName := d.Get("new_name").(string)
	if err := validateName(name); err != nil {
		return errorResponse(err)
	}
	if newName == "" {
		return logical.ErrorResponse("new_name is required"), nil
	}
	if err := validateName(newName); err != nil {
		return errorResponse(fmt.Errorf("new_name: %w", err))
	}
	if newName == name {
		return logical.ErrorResponse("new_name is the current name"), nil
	}
	defer b.lockNames(name, newName)()

	k, err := getKey(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return logical.ErrorResponse("there is no key named %q", name), nil
	}
	if err := validateNameAgainstKey(newName, k.APIKey); err != nil {
		return errorResponse(fmt.Errorf("new_name: %w", err))
	}
	if existing, err := getKey(ctx, req.Storage, newName); err != nil {
		return nil, err
	} else if existing != nil {
		return logical.ErrorResponse("a key named %q already exists; delete or rename it first", newName), nil
	}
	up, err := b.upstreamFor(ctx, req)
	if err != nil {
		return errorResponse(err)
	}
	if err := b.refuseDuplicateName(ctx, req, up, k.Provider, newName, k.UUID); err != nil {
		return errorResponse(err)
	}

	wal := &keyChangeWAL{Provider: k.Provider, UUID: k.UUID, Name: newName, OldName: name}
	walID, err := framework.PutWAL(ctx, req.Storage, walKindRename, wal)
	if err != nil {
		return nil, fmt.Errorf("writing the write-ahead log (nothing was changed): %w", err)
	}
	pk, err := up.platform.UpdateKey(ctx, k.Provider, k.UUID, keyChange{Name: newName})
	if err != nil {
		b.settleFailedCall(ctx, req, walID, walKindRename, wal, err)
		if errors.Is(err, errPlatformNotFound) {
			return logical.ErrorResponse("platform key %s behind %q no longer exists (deleted outside Vault?)", k.UUID, name), nil
		}
		return errorResponse(err)
	}
	b.names.remove(k.Provider, name, k.UUID)
	b.names.put(k.Provider, newName, k.UUID)

	renamed := *k
	renamed.Name = newName
	renamed.UpdatedAt = pk.UpdatedAt
	if err := putKey(ctx, req.Storage, &renamed); err != nil {
		b.settleWAL(ctx, req, walID, walKindRename, wal)
		return nil, err
	}
	if err := deleteKey(ctx, req.Storage, name); err != nil {
		// Both entries exist now; undo the new one and the platform rename.
		if undoErr := deleteKey(ctx, req.Storage, newName); undoErr == nil {
			b.settleWAL(ctx, req, walID, walKindRename, wal)
		}
		return nil, err
	}
	b.deleteWAL(ctx, req, walID)
	b.rotation.unschedule(name)
	b.rotation.track(&renamed)
	b.Logger().Info("key renamed", "from", name, "to", newName, "uuid", k.UUID)
	return keyResponse(&renamed), nil
}

const renameHelpSynopsis = "Rename a key, on the platform and in Vault. Needs sudo."

const renameHelpDescription = "Renames the platform key (same uuid, agents unaffected) and moves the Vault entry to new_name; the old name then reads as not found. An existing target name or a bad new name is refused. Rename moves a key from one name prefix to another, which a path ACL on the source cannot see, so the path is sudo-protected: grant it only to administrators, and restrict new_name with allowed_parameters where a team may rename within its own prefix."
