package backend

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// platform-keys/ shows the platform keys that this mount does not manage, as
// the last sync found them. They are read from storage, not from the
// platform: a list of 10,000 keys would otherwise cost 50 platform requests
// on every read. The platform returns no secret, so there is none to show.

const noSyncYet = "no sync has run on this mount yet: run vault write -f %ssync"

var platformKeyFields = map[string]*framework.FieldSchema{
	"uuid":       {Type: framework.TypeString, Description: "UUID of the platform key.", Required: true},
	"provider":   {Type: framework.TypeString, Description: "anthropic or openai.", Required: true},
	"name":       {Type: framework.TypeString, Description: "Its name on the platform.", Required: true},
	"created_at": {Type: framework.TypeTime, Description: "When the platform created it.", Required: true},
	"updated_at": {Type: framework.TypeTime, Description: "When the platform last changed it.", Required: true},
	"synced_at":  {Type: framework.TypeTime, Description: "When the sync that found it started.", Required: true},
	"adopt_hint": {Type: framework.TypeString, Description: "How to manage it with this mount.", Required: true},
	"managed_by": {Type: framework.TypeString, Description: "Always \"none on this mount\": another mount of the same token may manage it; a mount cannot see another's storage.", Required: true},
}

// pathPlatformKeysList lists the platform keys the mount does not manage.
func pathPlatformKeysList(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "platform-keys/?$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "platform-keys"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ListOperation: &framework.PathOperation{
				Callback:     answered(b.handlePlatformKeysList),
				Summary:      "List the platform keys this mount does not manage, as the last sync found them.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list"},
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"keys":     {Type: framework.TypeStringSlice, Description: "UUIDs of the unmanaged platform keys, sorted.", Required: true},
					"key_info": {Type: framework.TypeMap, Description: "For each uuid: provider, name, created_at and an adopt hint.", Required: true},
				}}}},
			},
		},
		HelpSynopsis:    platformKeysHelpSynopsis,
		HelpDescription: platformKeysHelpDescription,
	}
}

// pathPlatformKey reads one of them.
func pathPlatformKey(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "platform-keys/" + framework.MatchAllRegex("uuid"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "platform-key"},
		Fields: map[string]*framework.FieldSchema{
			"uuid": {Type: framework.TypeString, Description: "UUID of the platform key."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     answered(b.handlePlatformKeyRead),
				Summary:      "Read a platform key this mount does not manage, as the last sync found it; never a secret.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Responses:    map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: platformKeyFields}}},
			},
		},
		HelpSynopsis:    platformKeysHelpSynopsis,
		HelpDescription: platformKeysHelpDescription,
	}
}

func (b *gradientBackend) handlePlatformKeysList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	st, err := getSyncState(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	keys, err := readUnmanaged(ctx, req.Storage, st)
	if err != nil {
		return nil, err
	}
	uuids := make([]string, 0, len(keys))
	info := make(map[string]any, len(keys))
	for _, k := range keys {
		uuids = append(uuids, k.UUID)
		info[k.UUID] = map[string]any{
			"provider":   k.Provider,
			"name":       k.Name,
			"created_at": k.CreatedAt.Format(time.RFC3339),
			"adopt_hint": adoptHint(req.MountPoint, k),
		}
	}
	// Both fields always, even empty: the schema says so.
	resp := &logical.Response{Data: map[string]any{"keys": uuids, "key_info": info}}
	if st.LastRun.IsZero() {
		resp.AddWarning(fmt.Sprintf(noSyncYet, req.MountPoint))
	}
	return resp, nil
}

func (b *gradientBackend) handlePlatformKeyRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	uuid := d.Get("uuid").(string)
	if !platform.IsUUID(uuid) {
		return nil, callerErrorf("platform-keys/<uuid> takes a uuid in canonical form (8-4-4-4-12 hexadecimal digits)")
	}
	st, err := getSyncState(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if st.LastRun.IsZero() {
		return nil, callerErrorf(noSyncYet, req.MountPoint)
	}
	keys, err := readUnmanaged(ctx, req.Storage, st)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if !strings.EqualFold(k.UUID, uuid) {
			continue
		}
		return &logical.Response{Data: map[string]any{
			"uuid":       k.UUID,
			"provider":   k.Provider,
			"name":       k.Name,
			"created_at": k.CreatedAt.Format(time.RFC3339),
			"updated_at": k.UpdatedAt.Format(time.RFC3339),
			"synced_at":  st.LastRun.Format(time.RFC3339),
			"adopt_hint": adoptHint(req.MountPoint, k),
			"managed_by": "none on this mount",
		}}, nil
	}
	return nil, nil
}

// adoptHint is the one line that brings the key under this mount. Adoption
// sends a secret the caller supplies: the platform never gives one back.
func adoptHint(mount string, k unmanagedKey) string {
	if isProvisional(k.Name) {
		return "none: its name is a provisional one, so a create of a Vault mount was in flight on it; that create renames it, or its rollback deletes it"
	}
	return fmt.Sprintf("to manage it here: vault write %skeys/<name> provider=%s uuid=%s api_key=@<file with the provider key> (the key is renamed to <name> and gets that secret)",
		mount, k.Provider, k.UUID)
}

const platformKeysHelpSynopsis = "Platform keys this mount does not manage, as the last sync found them."

const platformKeysHelpDescription = `List: the uuids of the platform's Anthropic and OpenAI keys that no key of
this mount holds, with provider, name, created_at and a one-line hint to
adopt each with uuid=. Read platform-keys/<uuid> for one of them. The list
is what the last sync (periodic, or vault write -f <mount>sync) found; a key
that another mount manages shows here too, since a mount cannot see another
mount's storage. The platform never returns a secret, and neither do these
paths.`
