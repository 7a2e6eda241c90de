// Package floorplugin is the smallest external secrets plugin the benchmark
// compares the Gradient plugin with: every request to an external plugin
// crosses the same gRPC hop, whatever the plugin does, so what this one
// costs is the floor for any of them.
//
// Its paths answer a read from memory, with and without a lease, and two
// variants add the plugin-to-Vault calls a Gradient read makes (storage
// reads, the system view), so that a difference can be taken apart:
//
//	plain/<name>         data from memory
//	stored/<name>        + one storage read (what keys/<name> does)
//	leased/<name>        data from memory under a renewable one-hour lease
//	leased-get/<name>    + one storage read
//	leased-ttl/<name>    + one MaxLeaseTTL call (a system view round trip)
//	leased-stored/<name> + two storage reads and one MaxLeaseTTL call
//	                     (what creds/<name> did before it used the cached config)
//	plain-wide/<name>    a keys/<name>-sized answer (21 fields) from memory
//	create/<name>        what a keys/<name> create must do at the least: read
//	                     the name, write a WAL entry, verify the key with the
//	                     provider, create it on the platform, store it, delete
//	                     the WAL entry (fields url, token, api_key)
package floorplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// secretType is the lease type of the leased paths.
const secretType = "floor_value"

// leaseTTL is the lease of leased reads: the Gradient plugin's default creds TTL.
const leaseTTL = time.Hour

// storedKey is the storage entry the stored variants read.
const storedKey = "entry"

// Factory is the plugin's entry point.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend()
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

type floorBackend struct {
	*framework.Backend
	client *http.Client
}

func newBackend() *floorBackend {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	b := &floorBackend{client: &http.Client{Transport: t, Timeout: 30 * time.Second}}
	name := map[string]*framework.FieldSchema{"name": {Type: framework.TypeString, Description: "Any name."}}
	read := func(h framework.OperationFunc) map[logical.Operation]framework.OperationHandler {
		return map[logical.Operation]framework.OperationHandler{logical.ReadOperation: &framework.PathOperation{Callback: h}}
	}
	b.Backend = &framework.Backend{
		Help:        "A secrets plugin that answers reads from memory: the benchmark's floor.",
		BackendType: logical.TypeLogical,
		// The stored variants read entries of a Gradient key's size.
		InitializeFunc: func(ctx context.Context, req *logical.InitializationRequest) error {
			for _, key := range []string{storedKey, "config"} {
				if err := req.Storage.Put(ctx, &logical.StorageEntry{Key: key, Value: storedValue}); err != nil {
					return err
				}
			}
			return nil
		},
		Paths: []*framework.Path{
			{Pattern: "plain/" + framework.GenericNameRegex("name"), Fields: name, Operations: read(b.plain)},
			{Pattern: "stored/" + framework.GenericNameRegex("name"), Fields: name, Operations: read(b.stored)},
			{Pattern: "leased/" + framework.GenericNameRegex("name"), Fields: name, Operations: read(b.leased)},
			{Pattern: "leased-get/" + framework.GenericNameRegex("name"), Fields: name, Operations: read(b.leasedGet)},
			{Pattern: "leased-ttl/" + framework.GenericNameRegex("name"), Fields: name, Operations: read(b.leasedTTL)},
			{Pattern: "plain-wide/" + framework.GenericNameRegex("name"), Fields: name, Operations: read(b.plainWide)},
			{
				Pattern: "create/" + framework.GenericNameRegex("name"),
				Fields: map[string]*framework.FieldSchema{
					"name":    {Type: framework.TypeString, Description: "Key name."},
					"url":     {Type: framework.TypeString, Description: "Base URL of the emulator."},
					"token":   {Type: framework.TypeString, Description: "Platform token."},
					"api_key": {Type: framework.TypeString, Description: "Provider key."},
				},
				Operations: map[logical.Operation]framework.OperationHandler{logical.UpdateOperation: &framework.PathOperation{Callback: b.create}},
			},
			{Pattern: "leased-stored/" + framework.GenericNameRegex("name"), Fields: name, Operations: read(b.leasedStored)},
		},
		Secrets: []*framework.Secret{{
			Type:            secretType,
			Fields:          map[string]*framework.FieldSchema{"value": {Type: framework.TypeString, Description: "The value."}},
			DefaultDuration: leaseTTL,
			Renew:           b.renew,
			Revoke: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
				return nil, nil
			},
		}},
	}
	return b
}

// storedValue is about the size of a stored Gradient key entry.
var storedValue = []byte(`{"name":"floor-key-00001","provider":"anthropic","uuid":"00000000-0000-4000-8000-000000000000",` +
	`"description":"","api_key":"sk-ant-api03-FLOORFLOORFLOORFLOOR-0123456789abcdefXYZ","version":1,` +
	`"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","rotation_period":86400000000000,` +
	`"rotation_set_at":"2026-01-01T00:00:00Z","next_vault_rotation":"2026-01-02T00:00:00Z"}`)

// value is about the size of a Gradient creds answer's data.
func value(name string) map[string]any {
	return map[string]any{
		"api_key":  "sk-ant-api03-FLOORFLOORFLOORFLOOR-0123456789abcdefXYZ",
		"provider": "anthropic",
		"uuid":     "00000000-0000-4000-8000-000000000000",
		"version":  1,
		"name":     name,
	}
}

func (b *floorBackend) plain(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return &logical.Response{Data: value(d.Get("name").(string))}, nil
}

func (b *floorBackend) stored(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if _, err := req.Storage.Get(ctx, storedKey); err != nil {
		return nil, err
	}
	return b.plain(ctx, req, d)
}

func (b *floorBackend) leased(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	resp := b.Secret(secretType).Response(value(name), map[string]any{"name": name, "version": 1})
	resp.Secret.TTL = leaseTTL
	return resp, nil
}

func (b *floorBackend) leasedGet(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if _, err := req.Storage.Get(ctx, storedKey); err != nil {
		return nil, err
	}
	return b.leased(ctx, req, d)
}

func (b *floorBackend) leasedTTL(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	_ = b.System().MaxLeaseTTL()
	return b.leased(ctx, req, d)
}

func (b *floorBackend) leasedStored(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	for _, key := range []string{storedKey, "config"} {
		if _, err := req.Storage.Get(ctx, key); err != nil {
			return nil, err
		}
	}
	_ = b.System().MaxLeaseTTL()
	return b.leased(ctx, req, d)
}

func (b *floorBackend) renew(_ context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	resp := &logical.Response{Secret: req.Secret}
	resp.Secret.TTL = leaseTTL
	return resp, nil
}

func (b *floorBackend) plainWide(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	now := time.Now().UTC().Format(time.RFC3339)
	data := value(d.Get("name").(string))
	delete(data, "api_key")
	for k, v := range map[string]any{
		"description": "", "created_at": now, "updated_at": now, "key_hint": "fXYZ",
		"rotation_period": 0, "rotation_schedule": "", "rotation_window": 0, "disable_automated_rotation": false,
		"last_vault_rotation": now, "ttl": 0, "rotation_status": "ok", "rotation_error": "",
		"previous_key_hint": "", "next_key_hint": "", "agents": 0, "platform_name": "x",
	} {
		data[k] = v
	}
	return &logical.Response{Data: data}, nil
}

func (b *floorBackend) create(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, url := d.Get("name").(string), d.Get("url").(string)
	apiKey, token := d.Get("api_key").(string), d.Get("token").(string)
	if _, err := req.Storage.Get(ctx, "keys/"+name); err != nil {
		return nil, err
	}
	wal := &logical.StorageEntry{Key: "wal/" + name, Value: []byte(`{"kind":"create"}`)}
	if err := req.Storage.Put(ctx, wal); err != nil {
		return nil, err
	}
	verify, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/anthropic/v1/models?limit=1", nil)
	verify.Header.Set("x-api-key", apiKey)
	verify.Header.Set("anthropic-version", "2023-06-01")
	if err := b.call(verify); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	body, _ := json.Marshal(map[string]string{"name": name, "api_key": apiKey})
	create, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v2/gen-ai/anthropic/keys", bytes.NewReader(body))
	create.Header.Set("Authorization", "Bearer "+token)
	create.Header.Set("Content-Type", "application/json")
	if err := b.call(create); err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	entry, err := logical.StorageEntryJSON("keys/"+name, map[string]any{"name": name, "api_key": apiKey})
	if err != nil {
		return nil, err
	}
	if err := req.Storage.Put(ctx, entry); err != nil {
		return nil, err
	}
	if err := req.Storage.Delete(ctx, wal.Key); err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{"name": name}}, nil
}

func (b *floorBackend) call(r *http.Request) error {
	resp, err := b.client.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("%s %s: %s", r.Method, r.URL.Path, resp.Status)
	}
	return nil
}
