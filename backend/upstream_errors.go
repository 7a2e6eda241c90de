package backend

import (
	"errors"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// The one place where the upstream packages' typed errors become the
// backend's kinds of error; respond (requests.go) answers with them, and the
// few decisions in between (is a failed rotation worth retrying, did a
// change certainly not happen) ask the same functions.
//
//   - platform.Refused: the platform's 4xx, a provider rejecting a model or
//     admin key. The caller's to fix: a 400 with the (redacted) text, like a
//     callerError.
//   - platform.RateLimited: the platform's 429 or the mount's budget having no
//     room. Vault's logical.ErrUpstreamRateLimited (a 502).
//   - platform.NotFound for a managed key: the caller's answer says how to
//     recover (keyGoneIfNotFound); elsewhere a 404 is decided on where it
//     comes back (a delete of what is gone is done). platform.Unauthorized
//     is a 400 only on a config write (its token check); unhandled, like
//     platform.Failed, both are server faults.

// isCallerError reports an error whose text is the caller's answer (a 400).
func isCallerError(err error) bool {
	var ce *callerError
	return errors.As(err, &ce) || errors.Is(err, platform.ErrRefused)
}

// isRateLimited reports an error Vault should answer as
// logical.ErrUpstreamRateLimited.
func isRateLimited(err error) bool {
	return errors.Is(err, logical.ErrUpstreamRateLimited) || errors.Is(err, platform.ErrRateLimited)
}

// refused reports a definite refusal: the platform answered and changed
// nothing, or the backend refused before sending anything. An error marked
// platform.PossiblyApplied is never one.
func refused(err error) bool {
	return platform.IsRefusal(err) || (isCallerError(err) && !platform.IsPossiblyApplied(err))
}

// keyGoneIfNotFound turns the platform's 404 for a managed key into the
// caller's answer: the key was deleted outside Vault, and this is how to
// recover. Other errors pass unchanged.
func keyGoneIfNotFound(err error, k *keyEntry) error {
	if errors.Is(err, platform.ErrNotFound) {
		return callerErrorf("platform key %s behind %q no longer exists (deleted outside Vault?): run a sync (sync on the mount) and repair it with keys/%s/sync, which re-creates it with Vault's secret, or delete %q in Vault and write it again", k.UUID, k.Name, k.Name, k.Name)
	}
	return err
}
