//go:build acceptance

package acceptance

import (
	"encoding/json"
	"testing"
)

// A creds lease runs to config's creds_ttl, and Vault caps it at the mount's
// max lease TTL, on issue and on renewal (the plugin leaves that cap to
// Vault). A creds_ttl written to config applies to the next read at once.
func TestCreds_LeaseCappedByTheMountAndFollowsConfig(t *testing.T) {
	f := sharedFixture(t)
	e := newEmulator(t)
	mount := f.newMount(t, "lease", e)
	f.v.vault(t, as(f.root).ok(), "secrets", "tune", "-max-lease-ttl=10m", mount)
	name := uniqueName("lease")
	f.writeKey(t, mount, name, "anthropic", newAnthropicKey())

	type lease struct {
		LeaseID       string `json:"lease_id"`
		LeaseDuration int    `json:"lease_duration"`
		Renewable     bool   `json:"renewable"`
	}
	decode := func(out string) lease {
		t.Helper()
		var l lease
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("decoding the lease: %v", err)
		}
		return l
	}
	read := func() lease {
		t.Helper()
		return decode(f.v.vault(t, as(f.root).ok(), "read", "-format=json", mount+"/creds/"+name).Stdout)
	}

	// creds_ttl defaults to an hour: the mount's 10 minutes win.
	l := read()
	if l.LeaseDuration != 600 || !l.Renewable {
		t.Fatalf("creds lease: %d s, renewable %v; want 600 s, renewable", l.LeaseDuration, l.Renewable)
	}
	renewed := decode(f.v.vault(t, as(f.root).ok(), "lease", "renew", "-format=json", "-increment=1h", l.LeaseID).Stdout)
	if renewed.LeaseDuration != 600 {
		t.Errorf("renewed lease: %d s, want 600 s", renewed.LeaseDuration)
	}

	f.v.vault(t, as(f.root).ok(), "write", mount+"/config", "creds_ttl=2m")
	if l := read(); l.LeaseDuration != 120 {
		t.Errorf("creds lease after creds_ttl=2m: %d s, want 120 s", l.LeaseDuration)
	}
}

// Deleting a leaked key and writing it again under the same name starts it
// again at version 1: a lease of the deleted key is refused on renewal (so
// Vault Agent reads the new key at once), and docs/production.md's
// `vault lease revoke -prefix <mount>/creds/<name>` ends every lease of the
// name.
func TestCreds_LeaseOfADeletedAndRecreatedKeyDoesNotRenew(t *testing.T) {
	f := sharedFixture(t)
	name := uniqueName("leak")
	creds := f.mount + "/creds/" + name
	leaseOf := func() string {
		t.Helper()
		var l struct {
			LeaseID string `json:"lease_id"`
		}
		out := f.v.vault(t, as(f.root).ok(), "read", "-format=json", creds).Stdout
		if err := json.Unmarshal([]byte(out), &l); err != nil || l.LeaseID == "" {
			t.Fatalf("decoding the lease: %v\n%s", err, out)
		}
		return l.LeaseID
	}
	f.writeKey(t, f.mount, name, "anthropic", newAnthropicKey())
	leaked := leaseOf()
	f.v.vault(t, as(f.root).ok(), "delete", f.mount+"/keys/"+name)
	f.writeKey(t, f.mount, name, "anthropic", newAnthropicKey())
	current := leaseOf()

	r := f.v.vault(t, as(f.root), "lease", "renew", leaked)
	assertCode(t, r, 400, "no longer the platform key this lease was issued for", "read "+creds+" again")
	f.v.vault(t, as(f.root).ok(), "lease", "renew", current)

	f.v.vault(t, as(f.root).ok(), "lease", "revoke", "-prefix", creds)
	for _, id := range []string{leaked, current} {
		if r := f.v.vault(t, as(f.root), "lease", "lookup", id); r.Code == 0 {
			t.Errorf("lease %s survived revoke -prefix:\n%s", id, r)
		}
	}
}
