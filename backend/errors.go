package backend

import (
	"errors"
	"fmt"
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
