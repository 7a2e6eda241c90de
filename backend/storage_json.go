package backend

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"
)

// The plugin's storage entries are JSON documents, one per path. These two
// helpers read and write one, so that every entry type (keys, roles, lease
// records, sync records) fails the same way, naming what it is ("key
// \"x\"", "agent role \"y\"") and never its content.

// getJSON decodes the entry at path into a new T; nil when there is none.
func getJSON[T any](ctx context.Context, s logical.Storage, path, what string) (*T, error) {
	entry, err := s.Get(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return decodeJSON[T](entry, what)
}

// decodeJSON decodes a stored entry into a new T; nil for none.
func decodeJSON[T any](entry *logical.StorageEntry, what string) (*T, error) {
	if entry == nil {
		return nil, nil
	}
	v := new(T)
	if err := entry.DecodeJSON(v); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", what, err)
	}
	return v, nil
}

// putJSON stores v at path.
func putJSON(ctx context.Context, s logical.Storage, path, what string, v any) error {
	entry, err := logical.StorageEntryJSON(path, v)
	if err == nil {
		err = s.Put(ctx, entry)
	}
	if err != nil {
		return fmt.Errorf("storing %s: %w", what, err)
	}
	return nil
}
