package backend

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Request plumbing: how every handler is called, answered and locked.

// answered wraps a handler so that its errors become the caller's answer in
// one place: a caller mistake is a 400 carrying the whole message (with the
// field name and any context the handler wrapped around it), anything else
// goes to Vault as a server fault. Handlers never build error responses.
//
// It also refuses fields the path does not have. Vault itself only warns
// about them, but a misspelt field (rotation_perod=1h, api-key=...) that is
// silently ignored leaves the caller believing something happened.
func answered(h framework.OperationFunc) framework.OperationFunc {
	return answerErrors(func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		if err := refuseUnknownFields(d); err != nil {
			return nil, err
		}
		return h(ctx, req, d)
	})
}

// answerErrors is answered without the field check, for callbacks whose
// data Vault fills in itself (lease renewal).
func answerErrors(h framework.OperationFunc) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		resp, err := h(ctx, req, d)
		if err != nil {
			return respond(req, err)
		}
		return resp, nil
	}
}

// refuseUnknownFields names the first field the path does not know. The
// name is echoed only when it looks like a field name: a key pasted as a
// field name must not reach the error string.
func refuseUnknownFields(d *framework.FieldData) error {
	var unknown []string
	for field := range d.Raw {
		if _, ok := d.Schema[field]; !ok {
			unknown = append(unknown, field)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	known := slices.Sorted(maps.Keys(d.Schema))
	if !fieldNameLike.MatchString(unknown[0]) || platform.LooksLikeKey(unknown[0]) {
		return callerErrorf("unknown field (not shown: it does not look like a field name); this path takes: %s", strings.Join(known, ", "))
	}
	return callerErrorf("unknown field %q; this path takes: %s", unknown[0], strings.Join(known, ", "))
}

// fieldNameLike is what a field name can look like, misspelt or not.
var fieldNameLike = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,40}$`)

// respond turns a handler's error into Vault's answer.
func respond(req *logical.Request, err error) (*logical.Response, error) {
	if errors.Is(err, errNotConfigured) {
		return logical.ErrorResponse("this mount is not configured: write " + req.MountPoint + "config with a DigitalOcean token first"), nil
	}
	// What the upstream errors mean here is decided in upstream_errors.go.
	if isCallerError(err) {
		return logical.ErrorResponse(err.Error()), nil
	}
	// Between the plugin and Vault, errors travel over gRPC, which knows a
	// sentinel only when it is the error itself: wrapped, it arrives as a
	// plain error and the caller gets a 500. A coded error keeps the status
	// Vault gives the sentinel (404, and 502 for an upstream rate limit).
	switch {
	case errors.Is(err, logical.ErrNotFound):
		return nil, logical.CodedError(http.StatusNotFound, err.Error())
	case isRateLimited(err):
		return nil, logical.CodedError(http.StatusBadGateway, err.Error())
	}
	return nil, err
}

// keyHandler handles a request on an existing key.
type keyHandler func(ctx context.Context, req *logical.Request, d *framework.FieldData, k *keyEntry) (*logical.Response, error)

// readingKey starts a handler that only reads one existing key: a bad name is
// a 400 quoting the rule, a missing key is Vault's 404 (no response).
func (b *gradientBackend) readingKey(h keyHandler) framework.OperationFunc {
	return b.onKey(false, h)
}

// changingKey is readingKey for handlers that change the key: they hold the
// key name's lock from before the read to the end.
func (b *gradientBackend) changingKey(h keyHandler) framework.OperationFunc {
	return b.onKey(true, h)
}

func (b *gradientBackend) onKey(lock bool, h keyHandler) framework.OperationFunc {
	return answered(func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		name := d.Get("name").(string)
		if err := validateName(name); err != nil {
			return nil, err
		}
		if lock {
			defer b.lockNames(name)()
		}
		read := b.readKey
		if lock {
			// A change reads storage itself, under the name's lock: it
			// changes its copy, never the cache's.
			read = getKey
		}
		k, err := read(ctx, req.Storage, name)
		switch {
		case err != nil:
			return nil, err
		case k == nil && req.Operation == logical.UpdateOperation:
			// An action on a key that is not there: Vault's 404, saying so.
			return nil, fmt.Errorf("there is no key named %q: %w", name, logical.ErrNotFound)
		case k == nil:
			// A read is Vault's plain 404; a delete of what is not there
			// succeeds, as everywhere in Vault.
			return nil, nil
		}
		return h(ctx, req, d, k)
	})
}

// lockNames takes the per-name locks for every name, in the stable order
// locksutil gives, and returns the function that releases them. Empty names
// are skipped.
func (b *gradientBackend) lockNames(names ...string) func() {
	var keys []string
	for _, n := range names {
		if n != "" {
			keys = append(keys, n)
		}
	}
	return lockAll(locksutil.LocksForKeys(b.nameLocks, keys))
}

// lockUUID takes the lock of one platform key uuid: adoptions and renames
// hold it, so two names can never come to manage one platform key. It is
// always taken after the name locks, from a lock set of its own, so the
// order is the same everywhere. An empty uuid locks nothing.
func (b *gradientBackend) lockUUID(uuid string) func() {
	if uuid == "" {
		return func() {}
	}
	return lockAll([]*locksutil.LockEntry{locksutil.LockForKey(b.uuidLocks, strings.ToLower(uuid))})
}

func lockAll(locks []*locksutil.LockEntry) func() {
	for _, l := range locks {
		l.Lock()
	}
	return func() {
		for i := len(locks) - 1; i >= 0; i-- {
			locks[i].Unlock()
		}
	}
}

// sensitiveFields are the request fields of paths that carry a secret: every
// field whose schema is marked Sensitive, on any path, sorted. Derived from
// the schemas, so that a secret field added later is guarded as soon as it
// is marked (TestBackend_SecretFieldsAreSensitive checks the marking).
func sensitiveFields(paths []*framework.Path) []string {
	set := map[string]bool{}
	for _, p := range paths {
		for name, f := range p.Fields {
			if f.DisplayAttrs != nil && f.DisplayAttrs.Sensitive {
				set[name] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// HandleRequest and HandleExistenceCheck refuse a secret field whose value is
// not a string before the framework converts the fields: the framework's
// conversion error quotes the value it could not convert ("expected type
// 'string', got unconvertible type '[]interface {}', value: '[sk-...]'"),
// and that error reaches the caller, the server log and the audit log in
// plain text. Vault runs the existence check first on every write to a path
// that has one, so both need the guard.
func (b *gradientBackend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if err := b.nonStringSecret(req); err != nil {
		return respond(req, err)
	}
	defer b.withCacheKeepingStorage(req)()
	return b.Backend.HandleRequest(ctx, req)
}

func (b *gradientBackend) HandleExistenceCheck(ctx context.Context, req *logical.Request) (checkFound, exists bool, err error) {
	if err := b.nonStringSecret(req); err != nil {
		return false, false, errutil.UserError{Err: err.Error()}
	}
	defer b.withCacheKeepingStorage(req)()
	return b.Backend.HandleExistenceCheck(ctx, req)
}

// withCacheKeepingStorage hands the request's handlers the storage that
// keeps the key cache right, and returns what gives the caller its request
// back as it was.
func (b *gradientBackend) withCacheKeepingStorage(req *logical.Request) func() {
	s := req.Storage
	req.Storage = b.keepingCache(s)
	return func() { req.Storage = s }
}

// nonStringSecret is a caller error naming the secret field of the request
// that is not a string, without its value; nil when none.
func (b *gradientBackend) nonStringSecret(req *logical.Request) error {
	if req == nil {
		return nil
	}
	for _, field := range b.secretFields {
		if v, ok := req.Data[field]; ok && v != nil {
			if _, isString := v.(string); !isString {
				return callerErrorf("%s must be a string (the value is not shown: it may be a secret)", field)
			}
		}
	}
	return nil
}

// changeOperation is an operation that changes state: Vault forwards it from
// performance standbys and secondaries to the node that may write, as every
// write of this plugin must be.
func changeOperation(cb framework.OperationFunc, summary, verb string, responses map[int][]framework.Response) *framework.PathOperation {
	return &framework.PathOperation{
		Callback:                    cb,
		Summary:                     summary,
		DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: verb},
		Responses:                   responses,
		ForwardPerformanceStandby:   true,
		ForwardPerformanceSecondary: true,
	}
}
