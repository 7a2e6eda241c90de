package backend

import (
	"errors"
	"fmt"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// errNotConfigured: the mount has no config yet. respond turns it into a 400
// that names the mount's config path.
var errNotConfigured = errors.New("this mount is not configured")

// callerError is a mistake the caller can fix; handlers answer it with a 400
// carrying exactly this text, which must already be free of secrets.
type callerError struct{ msg string }

func (e *callerError) Error() string { return e.msg }

func callerErrorf(format string, args ...any) error {
	return &callerError{msg: fmt.Sprintf(format, args...)}
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
