package backend

import (
	"context"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// keys/<name>/rotate rotates a key now: to the api_key given, or to the
// staged next_api_key. It comes before the catch-all keys/<name> path, since
// Vault routes to the first pattern that matches.
func pathKeyRotate(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "keys/" + framework.GenericNameRegex("name") + "/rotate$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "key"},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the key."},
			"api_key": {
				Type:         framework.TypeString,
				Description:  "Rotate to this key. Without it, the staged next_api_key is promoted.",
				DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: changeOperation(b.changingKey(b.handleRotate), "Rotate the key now, to api_key or to the staged next_api_key (same platform key and uuid).", "rotate", map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: keyResponseFields}}}),
		},
		HelpSynopsis:    rotateHelpSynopsis,
		HelpDescription: rotateHelpDescription,
	}
}

// handleRotate: parse, lock, rotate through rotateSecret with the rotation
// bookkeeping set on a copy (stored in the same put), respond.
func (b *gradientBackend) handleRotate(ctx context.Context, req *logical.Request, d *framework.FieldData, k *keyEntry) (*logical.Response, error) {
	name := k.Name
	newKey := k.NextAPIKey
	if raw, ok := d.GetOk("api_key"); ok {
		var err error
		if newKey, err = normalizeAPIKey(k.Provider, raw.(string)); err != nil {
			return nil, err
		}
		if err := validateNameAgainstKey(name, newKey); err != nil {
			return nil, err
		}
	}
	if newKey == "" && !k.mints() {
		return nil, callerErrorf("key %q has no staged successor: stage one with `vault write %skeys/%s next_api_key=@new-key.txt`, or pass api_key= to this path", name, req.MountPoint, name)
	}
	if newKey == k.APIKey {
		return nil, callerErrorf("that is the key in use now; nothing was changed")
	}

	rotated := *k
	if err := rotated.recordRotation(b.rotation.now()); err != nil {
		return nil, err
	}
	if err := b.rotateOrMint(ctx, req.Storage, &rotated, newKey); err != nil {
		return nil, err
	}
	b.rotation.track(&rotated)
	b.Logger().Info("key rotated on request", "name", name, "uuid", rotated.UUID, "version", rotated.Version, "staged", newKey != "" && newKey == k.NextAPIKey, "minted", newKey == "")
	return b.withRotationState(keyResponse(&rotated), &rotated), nil
}

const rotateHelpSynopsis = "Rotate a key now: to api_key, or to the staged next_api_key."

const rotateHelpDescription = "With api_key, the key is verified with its provider and pushed to the same platform key (same uuid, so agents keep working). Without it, the successor staged with next_api_key on keys/<name> is promoted the same way. The version goes up by one, last_vault_rotation and previous_key_hint are recorded, the staged key is cleared, and the next scheduled rotation counts from now. A failure leaves the current key in place, in Vault and on the platform. For a key with source=openai-service-account and nothing staged, a new key is minted (a new OpenAI service account), verified and pushed the same way. With neither, the answer says how to stage one."
