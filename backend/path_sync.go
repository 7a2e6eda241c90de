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

var syncCountFields = map[string]*framework.FieldSchema{
	"in_sync":          {Type: framework.TypeInt, Description: "Managed keys as Vault holds them.", Required: true},
	"missing":          {Type: framework.TypeInt, Description: "Managed keys deleted from the platform outside Vault.", Required: true},
	"renamed":          {Type: framework.TypeInt, Description: "Managed keys renamed on the platform outside Vault.", Required: true},
	"modified_outside": {Type: framework.TypeInt, Description: "Managed keys changed on the platform after Vault last wrote them.", Required: true},
	"unmanaged":        {Type: framework.TypeInt, Description: "Platform keys this mount does not manage (see platform-keys/).", Required: true},
}

func pathSync(b *gradientBackend) *framework.Path {
	fields := map[string]*framework.FieldSchema{
		"synced_at": {Type: framework.TypeTime, Description: "When this sync started.", Required: true},
		"drifted":   {Type: framework.TypeMap, Description: "Each managed key not in sync, by name, with its status.", Required: true},
	}
	for k, v := range syncCountFields {
		fields[k] = v
	}
	return &framework.Path{
		Pattern:      "sync$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "platform"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: changeOperation(answered(b.handleSyncWrite), "Compare the platform's keys with the mount now and answer with the counts of each kind of drift.", "sync", map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: fields}}}),
		},
		HelpSynopsis:    syncHelpSynopsis,
		HelpDescription: syncHelpDescription,
	}
}

// keys/<name>/sync comes before the catch-all keys/<name> path.
func pathKeySync(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "keys/" + keyNameSegment + "/sync$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "key"},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the key."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback:     b.changingKey(b.handleRepair),
				Summary:      "Repair the drift the last sync found: push Vault's name and secret back, or create a deleted key again.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "repair"},
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"name":            {Type: framework.TypeString, Description: "Name of the key.", Required: true},
					"provider":        {Type: framework.TypeString, Description: "anthropic or openai.", Required: true},
					"uuid":            {Type: framework.TypeString, Description: "UUID of the platform key now.", Required: true},
					"drift":           {Type: framework.TypeString, Description: "What the last sync found: in_sync, missing, renamed or modified_outside.", Required: true},
					"repaired":        {Type: framework.TypeBool, Description: "Whether the platform was changed.", Required: true},
					"action":          {Type: framework.TypeString, Description: "What the repair did, in words.", Required: true},
					"old_uuid":        {Type: framework.TypeString, Description: "For a re-created key: the uuid of the deleted one."},
					"agents_lost_key": {Type: framework.TypeSlice, Description: "For a re-created key: the agents last known to use the deleted one (uuid, name); the platform unlinked them."},
					"agents_seen_at":  {Type: framework.TypeTime, Description: "When those agents were last seen using the deleted key."},
					"agents_note":     {Type: framework.TypeString, Description: "For a re-created key: what happened to its agents and how to point them at the new key."},
				}}}},
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    keySyncHelpSynopsis,
		HelpDescription: keySyncHelpDescription,
	}
}

func (b *gradientBackend) handleSyncWrite(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	res, err := b.runSync(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	data := res.counts.asMap()
	data["synced_at"] = res.started.Format(time.RFC3339)
	drifted := map[string]any{}
	for name, status := range res.drifted {
		drifted[name] = status
	}
	data["drifted"] = drifted
	return &logical.Response{Data: data}, nil
}

func (b *gradientBackend) handleRepair(ctx context.Context, req *logical.Request, _ *framework.FieldData, k *keyEntry) (*logical.Response, error) {
	defer b.lockUUID(k.UUID)()
	out, err := b.repairKey(ctx, req.Storage, req.MountPoint, k)
	if err != nil {
		return nil, err
	}
	data := map[string]any{
		"name":     out.key.Name,
		"provider": out.key.Provider,
		"uuid":     out.key.UUID,
		"drift":    out.drift,
		"repaired": out.drift != syncInSync,
		"action":   out.action,
	}
	resp := &logical.Response{Data: data}
	if out.drift != syncMissing {
		return resp, nil
	}
	data["old_uuid"] = out.oldUUID
	lost := make([]map[string]any, 0, len(out.lostAgents))
	for _, a := range out.lostAgents {
		lost = append(lost, map[string]any{"uuid": a.UUID, "name": a.Name})
	}
	data["agents_lost_key"] = lost
	if out.known {
		data["agents_seen_at"] = out.agentsSeenAt.Format(time.RFC3339)
	}
	note := lostAgentsNote(req.MountPoint, out)
	data["agents_note"] = note
	resp.AddWarning(note)
	return resp, nil
}

// lostAgentsNote tells the caller what the deletion did to the agents and
// how to give them the new key. The plugin does not move them itself: it
// cannot tell which agents without a key were meant to get this one.
func lostAgentsNote(mount string, out *repairOutcome) string {
	field := "anthropic_key_uuid"
	if out.key.Provider == platform.OpenAI {
		field = "open_ai_key_uuid"
	}
	var who string
	switch {
	case !out.known:
		who = fmt.Sprintf("The plugin never listed the agents of the old key (it records them when %skeys/%s/agents is read or agents are reassigned), so it cannot say which agents used it: look in the control panel for agents with no %s key.",
			mount, out.key.Name, out.key.Provider)
	case len(out.lostAgents) == 0:
		who = fmt.Sprintf("No agent used the old key when its agents were last listed, at %s; agents linked to it after that also lost it.", out.agentsSeenAt.Format(time.RFC3339))
	default:
		names := make([]string, len(out.lostAgents))
		for i, a := range out.lostAgents {
			names[i] = fmt.Sprintf("%s (%s)", a.Name, a.UUID)
		}
		who = fmt.Sprintf("Last known to use it, at %s: %s.", out.agentsSeenAt.Format(time.RFC3339), strings.Join(names, ", "))
	}
	return fmt.Sprintf("The agents that used the deleted platform key %s lost it when it was deleted: the platform unlinks them, and a new key does not bring them back. %s Point each at the new key %s: in the control panel (the agent's %s key), or with the platform's agent update, PUT /v2/gen-ai/agents/<agent uuid> with {\"%s\": \"%s\"}.",
		out.oldUUID, who, out.key.UUID, out.key.Provider, field, out.key.UUID)
}

// addSyncFields adds sync_status and last_synced to a read of keys/<name>:
// from the entry and sync/state, which the backend keeps in memory, so no
// storage read beyond the entry's (until the records of an earlier version
// are folded in: seenOf).
func (b *gradientBackend) addSyncFields(ctx context.Context, s logical.Storage, data map[string]any, k *keyEntry) error {
	st, err := b.cachedSyncState(ctx, s)
	if err != nil {
		return err
	}
	seen, err := seenOf(ctx, s, st, k)
	if err != nil {
		return err
	}
	status, at := syncStatus(k, seen)
	data["sync_status"] = status
	if !at.IsZero() {
		if seen == k.Seen {
			at = b.syncView.keySyncedAt(st, k.Name, at)
		}
		data["last_synced"] = at.Format(time.RFC3339)
	}
	return nil
}

// syncStatusFields are the status path's fields about the sync.
var syncStatusFields = map[string]*framework.FieldSchema{
	"sync_interval_seconds": {Type: framework.TypeInt, Description: "Seconds between periodic syncs; 0 when off.", Required: true},
	"sync_last_run":         {Type: framework.TypeTime, Description: "When the last completed sync started; absent when none has."},
	"sync_counts":           {Type: framework.TypeMap, Description: "What the last completed sync found: in_sync, missing, renamed, modified_outside, unmanaged."},
	"sync_last_error":       {Type: framework.TypeString, Description: "Why the last periodic sync failed, when it did and none completed since."},
}

// addSyncStatus adds the sync fields to status.
func (b *gradientBackend) addSyncStatus(ctx context.Context, s logical.Storage, data map[string]any) error {
	st, err := getSyncState(ctx, s)
	if err != nil {
		return err
	}
	cfg, err := getConfig(ctx, s)
	if err != nil {
		return err
	}
	interval := defaultSyncInterval
	if cfg != nil {
		interval = cfg.syncInterval()
	}
	data["sync_interval_seconds"] = int64(interval.Seconds())
	if !st.LastRun.IsZero() {
		data["sync_last_run"] = st.LastRun.Format(time.RFC3339)
		data["sync_counts"] = st.Counts.asMap()
	}
	if st.LastError != "" {
		data["sync_last_error"] = fmt.Sprintf("%s: %s", st.LastErrorAt.Format(time.RFC3339), st.LastError)
	}
	return nil
}

const syncHelpSynopsis = "Find drift now: compare the platform's keys with the keys this mount manages."

const syncHelpDescription = `Lists the platform's Anthropic and OpenAI keys (every page, within the
mount's rate budget) and compares them with the mount. A managed key is
missing (deleted on the platform), renamed (its platform name is not its
Vault name), modified_outside (its updated_at moved past what Vault recorded
from its own last write) or in_sync; platform keys that this mount does not
manage are counted as unmanaged and listed at platform-keys/. The answer
gives the counts, and drifted names each key that is not in sync. The same
sync runs every sync_interval (config) on the active node. Read keys/<name>
for one key's sync_status and repair it with keys/<name>/sync.`

const keySyncHelpSynopsis = "Repair a key's drift: put the platform key back the way Vault holds it."

const keySyncHelpDescription = `Acts on what the last sync found. modified_outside: the secret Vault holds
is pushed to the same platform key (same uuid, agents keep working).
renamed: the Vault name is restored and the secret pushed. missing: the key
is created again under its name with the secret Vault holds; the new uuid is
stored, and the answer names the agents last known to use the deleted key
(the platform unlinked them) and how to point them at the new one.

The secret is checked with the provider first and never pushed back if the
provider rejects it. If the platform key changed again since that sync, or
its name was taken by another key, nothing is changed and the answer (a 400)
says to sync again.`
