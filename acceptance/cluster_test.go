//go:build acceptance

package acceptance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// testWALMinAge lets Vault's periodic rollback (once a minute on the active
// node) hand the plugin WAL entries older than 5 s instead of 10 minutes.
// 5 s is far longer than the moment between the entry being written and the
// test killing the node that wrote it, so that node never rolls it back
// itself.
const testWALMinAge = "GRADIENT_TEST_WAL_MIN_AGE=5s"

// clusterKey is one key of TestCluster and what the test expects of it.
type clusterKey struct {
	name, provider string
	first, next    string        // the secret written, the successor staged
	then           string        // the successor staged after the failover
	period         time.Duration // rotation_period
	uuid           string
}

// pluginUA matches the User-Agent the plugin sends the platform; godo adds
// its own name after it.
var pluginUA = regexp.MustCompile(`^vault-plugin-secrets-gradient/\S+ \(pid (\d+)\)`)

// TestCluster runs the plugin on a three-node Vault cluster with integrated
// (raft) storage:
//   - the plugin is registered (by sha256 and version), enabled and
//     configured, and keys are written, all through standbys, which forward
//     to the active node (not redirect); each key is created on the platform
//     once and reads back the same from every node;
//   - keys rotate on a short schedule while the active node is killed with
//     SIGKILL (Vault and its plugin process); a standby takes over, and every
//     staged successor is promoted exactly once, some by the old active and
//     the rest by the new one, none skipped;
//   - a rotation in flight when the node died (its platform call lands after
//     the node is gone) leaves a WAL entry in the replicated storage; the
//     new active's periodic rollback finds it and pushes the stored secret
//     back;
//   - the killed node rejoins as a standby and serves reads; a lease taken
//     before the failover no longer renews once its key rotated, on any node;
//   - a second round of staged keys is promoted once each by the new active
//     node, across an upgrade of the running cluster to another plugin
//     version and a rollback to this one (sha256, version, tune, reload);
//   - the DigitalOcean token is rotated through a standby before all this
//     and the old one refused: no call uses it afterwards;
//   - an agent API key leased (agent-creds/) from the old active node is
//     deleted on the platform by the new active node when the lease is
//     revoked after the failover;
//   - only the active node's plugin process ever calls the platform.
func TestCluster(t *testing.T) {
	if !findsPlugins {
		t.Skip("killing and telling apart the nodes' plugin processes needs Linux /proc")
	}
	began := time.Now()
	e := newEmulator(t)
	c := startCluster(t, 3)
	act, standbys := c.waitActive(t, 30*time.Second)
	root := c.rootToken
	t.Logf("cluster of 3 up in %s: %s active, %s and %s standby", since(began), act.name, standbys[0].name, standbys[1].name)
	// An agent, made as an operator would in the control panel, with the
	// token the test rotates away below; its agent-creds lease spans the
	// failover.
	agent := e.createAgent(t, uniqueName("ha-agent"), "anthropic", "")

	// The standbys' addresses really are standbys: asked not to forward,
	// one redirects to the active node's api_addr.
	for _, sb := range standbys {
		if code, loc := redirectsWithoutForwarding(t, sb, root, "sys/policies/acl"); code != 307 || !strings.HasPrefix(loc, act.addr+"/") {
			t.Fatalf("%s without forwarding answered %d %q, want a 307 to %s", sb.name, code, loc, act.addr)
		}
	}

	// Everything below goes to a standby with redirects off (cli): each
	// success is a request the standby forwarded to the active node.
	sbA, sbB := standbys[0], standbys[1]
	sbA.cli(t, as(root).ok(), "plugin", "register", "-sha256="+pluginSHA256, "-version="+pluginVersion,
		"-env="+testTick, "-env="+testMinPeriod, "-env="+testWALMinAge, "secret", pluginName)
	for _, s := range c.nodes {
		out := s.cli(t, as(root).ok(), "plugin", "info", "-format=json", "-version="+pluginVersion, "secret", pluginName).Stdout
		var info map[string]any
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("plugin info on %s: %v\n%s", s.name, err, out)
		}
		if d, ok := info["data"].(map[string]any); ok {
			info = d
		}
		if str(info, "sha256") != pluginSHA256 || str(info, "version") != pluginVersion {
			t.Fatalf("plugin info on %s: %v", s.name, info)
		}
	}
	mount := "gradient"
	sbB.cli(t, as(root).ok(), "secrets", "enable", "-path="+mount, "-plugin-version="+pluginVersion, pluginName)
	sbA.cli(t, as(root).withStdin(e.token).ok(), "write", mount+"/config", "token=-",
		"api_url="+e.url, "anthropic_url="+e.url+"/anthropic", "openai_url="+e.url+"/openai")
	for _, s := range c.nodes {
		if cfg := readVia(t, s, root, mount+"/config"); str(cfg, "api_url") != e.url {
			t.Fatalf("config read on %s: %v", s.name, cfg)
		}
	}

	// Keys, each due at its own time: the first two before the active
	// node is killed, the rest during and after the failover.
	// The third is due about when the node dies, the last well after.
	periods := []time.Duration{3 * time.Second, 5 * time.Second, 9 * time.Second, 18 * time.Second}
	var keys []*clusterKey
	for i, p := range periods {
		provider := []string{"anthropic", "openai"}[i%2]
		keys = append(keys, &clusterKey{name: uniqueName(fmt.Sprintf("ha%d", i)), provider: provider,
			first: newKey(provider), next: newKey(provider), then: newKey(provider), period: p})
	}
	// A key that does not rotate on a schedule: its manual rotation is the
	// change in flight when the active node dies.
	w := &clusterKey{name: uniqueName("ha-wal"), provider: "anthropic", first: newAnthropicKey(), next: newAnthropicKey()}
	all := append(append([]*clusterKey(nil), keys...), w)
	wantCreates := map[string]int{}
	for i, k := range all {
		standbys[i%2].cli(t, as(root).ok(), "write", mount+"/keys/"+k.name, "provider="+k.provider, "api_key="+k.first)
		wantCreates[k.provider]++
	}
	// Every create ends with a PUT that gives the key its name (it is sent
	// under a provisional one): PUTs before this are not rotations.
	written := time.Now()
	counts := e.Counts()
	for p, n := range wantCreates {
		if got := counts["POST /v2/gen-ai/"+p+"/keys"]; got != n {
			t.Errorf("%d %s key creates reached the platform, want %d", got, p, n)
		}
	}
	for _, k := range all {
		if on := e.keysNamed(k.name); len(on) != 1 || on[0].Secret != k.first {
			t.Fatalf("%s is on the platform %d times: %+v", k.name, len(on), on)
		}
	}
	var paths []string
	for _, k := range all {
		k.uuid = e.keysNamed(k.name)[0].UUID
		paths = append(paths, mount+"/keys/"+k.name, mount+"/creds/"+k.name)
	}
	for node, data := range readAll(t, c.nodes, root, paths...) {
		for _, k := range all {
			read, creds := data[mount+"/keys/"+k.name], data[mount+"/creds/"+k.name]
			if str(read, "uuid") != k.uuid || str(creds, "api_key") != k.first || num(read, "version") != 1 {
				t.Fatalf("%s reads on %s: uuid %s (platform %s), version %d, creds match: %v", k.name, node,
					str(read, "uuid"), k.uuid, num(read, "version"), str(creds, "api_key") == k.first)
			}
		}
	}
	t.Logf("config and %d keys written through standbys, each created once and read back on all 3 nodes (%s)", len(all), since(began))

	// Rotate the DigitalOcean token through a standby, then delete the old
	// one at DigitalOcean: from here on every platform call, on whichever
	// node is active, must use the new token.
	newToken := mustNotLeak("do-token-" + randomString(alnum, 32))
	e.AddToken(newToken)
	sbB.cli(t, as(root).withStdin(newToken).ok(), "write", mount+"/config", "token=-")
	e.RemoveToken(e.token)

	// A consumer holds a lease on the last key's credentials from before
	// its rotation, which the new active node will make.
	held := keys[len(keys)-1]
	var leased struct {
		LeaseID   string `json:"lease_id"`
		Renewable bool   `json:"renewable"`
	}
	out := sbA.cli(t, as(root).ok(), "read", "-format=json", mount+"/creds/"+held.name).Stdout
	if err := json.Unmarshal([]byte(out), &leased); err != nil || leased.LeaseID == "" || !leased.Renewable {
		t.Fatalf("creds of %s are not a renewable lease (%v)", held.name, err)
	}

	// A holder of an agent API key from before the failover: the old
	// active node creates the key, and the lease, in the replicated
	// storage, outlives that node.
	agentRole := uniqueName("ha-agent-role")
	sbB.cli(t, as(root).ok(), "write", mount+"/agent-roles/"+agentRole, "agent_uuid="+agent, "ttl=1h")
	var agentLease agentCreds
	out = sbA.cli(t, as(root).ok(), "read", "-format=json", mount+"/agent-creds/"+agentRole).Stdout
	if err := json.Unmarshal([]byte(out), &agentLease); err != nil || agentLease.LeaseID == "" || mustNotLeak(agentLease.Data.APIKey) == "" {
		t.Fatalf("agent-creds of %s: no lease and key (%v)", agentRole, err)
	}
	agentKeyPath := "/v2/gen-ai/agents/" + agent + "/api_keys/" + agentLease.Data.APIKeyUUID
	if e.callAgent(t, agentLease.Data.AgentURL, agentLease.Data.APIKey) != 200 {
		t.Fatal("the agent API key issued before the failover is not live at the agent")
	}

	// Stage a successor for each key and start its schedule.
	staged := map[*clusterKey]time.Time{}
	for i, k := range keys {
		staged[k] = time.Now()
		standbys[i%2].cli(t, as(root).ok(), "write", mount+"/keys/"+k.name,
			fmt.Sprintf("rotation_period=%ds", int(k.period.Seconds())), "next_api_key="+k.next)
	}
	rotationStart := time.Now()
	rotated := func(k *clusterKey) bool {
		pk := e.key(k.provider, k.uuid)
		return pk != nil && pk.Secret == k.next
	}
	eventually(t, 30*time.Second, "the first two scheduled rotations", func() bool { return rotated(keys[0]) && rotated(keys[1]) })
	for _, k := range keys[2:] {
		// Due a period after it was staged (stored to the second).
		if rotated(k) && time.Now().Before(staged[k].Add(k.period-time.Second)) {
			t.Fatalf("%s (period %s) rotated before its time", k.name, k.period)
		}
	}

	// A change in flight: the platform holds the rotation of w for 4 s and
	// then applies it, whoever is still waiting. The active node dies
	// while its plugin waits: the WAL entry it wrote first stays behind.
	wPath := "/v2/gen-ai/" + w.provider + "/keys/" + w.uuid
	e.InjectFault(emulator.Fault{Method: "PUT", Path: wPath, Mode: "late", Delay: 4 * time.Second})
	manual := make(chan cliResult, 1)
	go func() { manual <- act.cli(nil, as(root), "write", mount+"/keys/"+w.name+"/rotate", "api_key="+w.next) }()
	waitFor(t, 20*time.Second, "the rotation of "+w.name+" to reach the platform", func() bool {
		for _, r := range e.Requests() {
			if r.Method == "PUT" && r.Path == wPath && r.Pending {
				return true
			}
		}
		return false
	})
	old := act
	killStart := time.Now()
	deadPlugins := c.crash(t, old)
	killDone := time.Now()
	t.Logf("SIGKILLed %s (active) and its plugin processes %v, %s after the schedules started", old.name, deadPlugins, killStart.Sub(rotationStart).Round(100*time.Millisecond))
	if len(deadPlugins) == 0 {
		t.Fatalf("the active node %s ran no plugin process", old.name)
	}

	newAct, _ := c.waitActive(t, 60*time.Second)
	t.Logf("failover: %s active %s after the kill", newAct.name, since(killStart))
	if r := <-manual; r.Code == 0 {
		t.Fatalf("the rotation sent to the killed node succeeded:\n%s", r)
	}

	// Every staged successor is promoted, by one node or the other.
	eventually(t, 60*time.Second, "every scheduled rotation", func() bool {
		for _, k := range keys {
			if !rotated(k) {
				return false
			}
		}
		return true
	})
	t.Logf("all %d scheduled rotations on the platform %s after the kill", len(keys), since(killStart))
	// The late change of w has landed by now (4 s after it arrived).
	waitFor(t, 20*time.Second, "the late rotation of "+w.name+" to land", func() bool { return rotated(w) })

	// The killed node comes back as a standby and serves reads.
	c.rejoin(t, old)
	act2, standbys2 := c.waitActive(t, 30*time.Second)
	if act2 != newAct || !containsNode(standbys2, old) {
		t.Fatalf("after the rejoin: %s active, standbys %v; want %s active and %s standby", act2.name, names(standbys2), newAct.name, old.name)
	}
	c.waitVoters(t, old, 3)
	t.Logf("%s rejoined as a standby %s after the kill", old.name, since(killStart))

	// The lease from before the rotation no longer renews, on any node: the
	// consumer reads again and gets the new key.
	for _, s := range c.nodes {
		r := s.cli(t, as(root), "lease", "renew", leased.LeaseID)
		if r.Code == 0 || !strings.Contains(r.Stderr, "rotated") {
			t.Errorf("renewing the lease on %s's creds from before its rotation, on %s:\n%s", held.name, s.name, r)
		}
	}

	// The agent key's lease, issued by the dead node, is revoked through the
	// node that issued it (a standby now, which forwards): the new active
	// node's plugin deletes the key on the platform (who sent the DELETE is
	// checked with every other platform call below).
	old.cli(t, as(root).ok(), "lease", "revoke", agentLease.LeaseID)
	e.waitAgentKeyGone(t, agent, agentLease.Data.APIKeyUUID, 30*time.Second)
	if e.callAgent(t, agentLease.Data.AgentURL, agentLease.Data.APIKey) != 401 {
		t.Error("the agent API key still works at the agent after its lease was revoked")
	}
	t.Logf("the agent API key leased before the failover was deleted on revocation, %s after the kill", since(killStart))

	// Every node reads the rotated keys; the reads take many scheduler
	// ticks, after which the secret-change counts show one rotation each.
	for node, data := range readAll(t, c.nodes, root, paths...) {
		for _, k := range keys {
			read, creds := data[mount+"/keys/"+k.name], data[mount+"/creds/"+k.name]
			if num(read, "version") != 2 || str(read, "key_hint") != hint(k.next) || str(read, "previous_key_hint") != hint(k.first) ||
				str(read, "next_key_hint") != "" || str(creds, "api_key") != k.next {
				t.Errorf("%s on %s after the failover: version %d, key_hint %s (want %s), previous %s, next %q, creds match %v",
					k.name, node, num(read, "version"), str(read, "key_hint"), hint(k.next), str(read, "previous_key_hint"),
					str(read, "next_key_hint"), str(creds, "api_key") == k.next)
			}
		}
		// Storage never recorded w's rotation: the node died before it.
		if read := data[mount+"/keys/"+w.name]; num(read, "version") != 1 || str(read, "key_hint") != hint(w.first) {
			t.Errorf("%s on %s: version %d, key_hint %s; want version 1 with the first key", w.name, node, num(read, "version"), str(read, "key_hint"))
		}
	}
	changes := e.SecretChanges()
	for _, k := range keys {
		if changes[k.uuid] != 1 {
			t.Errorf("%s (period %s): %d secret changes on the platform, want exactly 1", k.name, k.period, changes[k.uuid])
		}
	}

	// A second round on the new active node: stage another successor for
	// every key. Each is promoted at its next due time (at once for a key
	// already overdue), across the plugin reloads below.
	for i, k := range keys {
		standbys2[i%2].cli(t, as(root).ok(), "write", mount+"/keys/"+k.name, "next_api_key="+k.then)
	}

	// While the new active's rollback is due: upgrade the running cluster
	// to another version of the plugin, and roll back to this one.
	// Through the standbys of now: the old one and the node that rejoined.
	sb1, sb2 := standbys2[0], standbys2[1]
	upgrade := "v99.0.0-upgrade"
	command, sum := c.buildPlugin(t, upgrade)
	sb1.cli(t, as(root).ok(), "plugin", "register", "-sha256="+sum, "-version="+upgrade, "-command="+command,
		"-env="+testTick, "-env="+testMinPeriod, "-env="+testWALMinAge, "secret", pluginName)
	for _, version := range []string{upgrade, pluginVersion} {
		sb2.cli(t, as(root).ok(), "secrets", "tune", "-plugin-version="+version, mount)
		sb1.cli(t, as(root).ok(), "plugin", "reload", "-plugin="+pluginName)
		want := map[string]string{upgrade: sum, pluginVersion: pluginSHA256}[version]
		for _, s := range c.nodes {
			var m mountPlugin
			waitFor(t, 30*time.Second, fmt.Sprintf("%s to run %s as seen from %s", mount, version, s.name), func() bool {
				m = mountInfo(t, s, root, mount)
				return m.PluginVersion == version && m.RunningVersion == version && m.RunningSHA256 == want
			})
		}
		if creds := readVia(t, sb2, root, mount+"/creds/"+w.name); str(creds, "api_key") != w.first {
			t.Fatalf("creds of %s after switching to %s", w.name, version)
		}
		t.Logf("%s runs plugin %s (sha256 %s...) on %s, %s after the kill", mount, version, want[:12], newAct.name, since(killStart))
	}
	// The unused version leaves the catalog; the mount keeps running.
	sb2.cli(t, as(root).ok(), "plugin", "deregister", "-version="+upgrade, "secret", pluginName)
	if m := mountInfo(t, sb1, root, mount); m.RunningVersion != pluginVersion || m.RunningSHA256 != pluginSHA256 {
		t.Fatalf("after deregistering %s: %+v", upgrade, m)
	}
	upgraded := false
	for _, pid := range c.pids.byNode(newAct.name) {
		upgraded = upgraded || filepath.Base(c.pids.exeOf(pid)) == command
	}
	if !upgraded {
		t.Errorf("no plugin process of %s ran %s", newAct.name, command)
	}

	// The second round: every key promoted once more, none skipped, by the
	// new active node.
	eventually(t, 60*time.Second, "the second round of scheduled rotations", func() bool {
		for _, k := range keys {
			if pk := e.key(k.provider, k.uuid); pk == nil || pk.Secret != k.then {
				return false
			}
		}
		return true
	})
	t.Logf("second round: all %d keys rotated again %s after the kill", len(keys), since(killStart))

	// Every node reads the second round; the reads take many scheduler
	// ticks, after which the counts show exactly one change per staged key.
	for node, data := range readAll(t, c.nodes, root, paths...) {
		if str(data[mount+"/creds/"+w.name], "api_key") != w.first {
			t.Errorf("%s creds on %s are not the stored key", w.name, node)
		}
		for _, k := range keys {
			read, creds := data[mount+"/keys/"+k.name], data[mount+"/creds/"+k.name]
			if num(read, "version") != 3 || str(read, "key_hint") != hint(k.then) || str(read, "previous_key_hint") != hint(k.next) ||
				str(creds, "api_key") != k.then {
				t.Errorf("%s on %s after the second round: version %d, key_hint %s (want %s), previous %s, creds match %v",
					k.name, node, num(read, "version"), str(read, "key_hint"), hint(k.then), str(read, "previous_key_hint"), str(creds, "api_key") == k.then)
			}
		}
	}
	changes = e.SecretChanges()
	for _, k := range keys {
		if changes[k.uuid] != 2 {
			t.Errorf("%s (period %s): %d secret changes on the platform, want exactly 2 (one per staged key)", k.name, k.period, changes[k.uuid])
		}
	}

	// The WAL entry the dead node wrote is in the cluster's storage: the new
	// active's periodic rollback (its first pass comes a minute after it
	// took over) pushes back the secret Vault stores.
	eventually(t, 150*time.Second, "the new active to roll back "+w.name, func() bool {
		pk := e.key(w.provider, w.uuid)
		return pk != nil && pk.Secret == w.first
	})
	t.Logf("the dead node's WAL entry rolled back %s after the kill", since(killStart))
	if n := e.SecretChanges()[w.uuid]; n != 2 {
		t.Errorf("%s: %d secret changes, want 2 (the late rotation, then its rollback)", w.name, n)
	}
	// The plugin logs the rollback after the platform answered, and Vault
	// writes the plugin's line to its log a moment later: wait for it.
	eventually(t, 30*time.Second, newAct.name+"'s log to show the rollback", func() bool {
		b, _ := os.ReadFile(newAct.logPath)
		return strings.Contains(string(b), "pushed the stored secret back after an incomplete rotation")
	})

	// Who called the platform: every request carries the plugin's pid, and
	// the pid is a plugin process of the node that was active then.
	byNode := map[string]int{}
	rotatedBy := map[string][]string{} // the nodes that pushed each key's successful PUTs
	rolledBackBy := ""
	var agentKeyCreatedBy, agentKeyDeletedBy []string
	for _, r := range e.Requests() {
		if !strings.HasPrefix(r.Path, "/v2/gen-ai/") {
			continue
		}
		// The test's own create of the agent (an operator's act; the plugin
		// never creates agents).
		if r.Method == "POST" && r.Path == "/v2/gen-ai/agents" && !pluginUA.MatchString(r.UserAgent) {
			continue
		}
		m := pluginUA.FindStringSubmatch(r.UserAgent)
		if m == nil {
			t.Errorf("%s %s came with User-Agent %q, not the plugin's", r.Method, r.Path, r.UserAgent)
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		owner := c.pids.of(pid)
		switch {
		case owner == "":
			t.Errorf("%s %s at %s came from pid %d, not a plugin process of any node", r.Method, r.Path, r.Time.Format(time.StampMilli), pid)
		case owner == old.name && r.Time.Before(killDone) || owner == newAct.name && r.Time.After(killStart):
			byNode[owner]++
		default:
			t.Errorf("%s %s at %s came from %s (pid %d), which was not the active node then", r.Method, r.Path, r.Time.Format(time.StampMilli), owner, pid)
		}
		if r.Method == "PUT" && r.Status == 200 && r.Time.After(written) {
			for _, k := range keys {
				if r.Path == "/v2/gen-ai/"+k.provider+"/keys/"+k.uuid {
					rotatedBy[k.name] = append(rotatedBy[k.name], owner)
				}
			}
			if r.Path == wPath && r.Time.After(killStart) {
				rolledBackBy = owner
			}
		}
		switch {
		case r.Method == "POST" && r.Path == "/v2/gen-ai/agents/"+agent+"/api_keys":
			agentKeyCreatedBy = append(agentKeyCreatedBy, fmt.Sprintf("%s:%d", owner, r.Status))
		case r.Method == "DELETE" && r.Path == agentKeyPath:
			agentKeyDeletedBy = append(agentKeyDeletedBy, fmt.Sprintf("%s:%d", owner, r.Status))
		}
	}
	// One create, by the node active then; one delete, by the new active.
	if want := []string{old.name + ":200"}; fmt.Sprint(agentKeyCreatedBy) != fmt.Sprint(want) {
		t.Errorf("agent API key creates by node:status %v, want %v", agentKeyCreatedBy, want)
	}
	if want := []string{newAct.name + ":200"}; fmt.Sprint(agentKeyDeletedBy) != fmt.Sprint(want) {
		t.Errorf("agent API key deletes by node:status %v, want %v", agentKeyDeletedBy, want)
	}
	t.Logf("agent API key (node:status): created by %v, deleted by %v", agentKeyCreatedBy, agentKeyDeletedBy)
	if n := e.Statuses()[401]; n != 0 {
		t.Errorf("%d platform requests were refused with 401 after the token rotation", n)
	}
	t.Logf("platform requests by node: %v (plugin pids: %s %v, %s %v)", byNode, old.name, c.pids.byNode(old.name), newAct.name, c.pids.byNode(newAct.name))
	var order []string
	for i, k := range keys {
		by := rotatedBy[k.name]
		order = append(order, fmt.Sprintf("%s(%s)=%v", k.name, k.period, by))
		// The first two keys rotated before the kill, the last one after
		// it; every second rotation came after it.
		wantFirst := "" // either, for the keys due around the kill
		switch {
		case i < 2:
			wantFirst = old.name
		case i == len(keys)-1:
			wantFirst = newAct.name
		}
		if len(by) < 2 || (wantFirst != "" && by[0] != wantFirst) || by[len(by)-1] != newAct.name {
			t.Errorf("%s was rotated by %v; want %q first and %s last", k.name, by, wantFirst, newAct.name)
		}
	}
	t.Logf("rotated by (successful PUTs): %s", strings.Join(order, " "))
	if rolledBackBy != newAct.name {
		t.Errorf("the rollback of %s was pushed by %q, want the new active %s", w.name, rolledBackBy, newAct.name)
	}
	for _, s := range c.nodes {
		if s != old && s != newAct && len(c.pids.byNode(s.name)) > 0 {
			t.Logf("%s (never active) ran plugin processes %v; none called the platform", s.name, c.pids.byNode(s.name))
		}
	}
	cachedReadsFollowStorage(t, c, root, mount)
	t.Logf("TestCluster wall time %s", since(began))
}

// cachedReadsFollowStorage: reads of keys/<name> and creds/<name> come from
// the active node's key cache. A node that steps down drops its mounts, and
// a Raft snapshot restore changes storage behind the plugin: after each, a
// read returns what storage holds, not what the cache held.
func cachedReadsFollowStorage(t *testing.T, c *cluster, root, mount string) {
	name := uniqueName("ha-cache")
	secrets := []string{newAnthropicKey(), newAnthropicKey(), newAnthropicKey()}
	path := mount + "/keys/" + name
	wantRead := func(s *vaultServer, secret string, version int, when string) {
		t.Helper()
		creds, key := readVia(t, s, root, mount+"/creds/"+name), readVia(t, s, root, path)
		if str(creds, "api_key") != secret || num(key, "version") != version {
			t.Fatalf("%s, %s reads version %d (want %d); creds hold the expected secret: %v", when, s.name, num(key, "version"), version, str(creds, "api_key") == secret)
		}
	}
	first, _ := c.waitActive(t, 30*time.Second)
	first.cli(t, as(root).ok(), "write", path, "provider=anthropic", "api_key="+secrets[0])
	wantRead(first, secrets[0], 1, "before the step-down") // in first's cache now

	// first steps down; another node takes over and changes the key. With
	// the third node stopped, the next step-down can only hand the cluster
	// back to first (a node that steps down waits before it competes
	// again, so first is the one left to take over).
	stepDown := func(s *vaultServer) *vaultServer {
		t.Helper()
		s.cli(t, as(root).ok(), "operator", "step-down")
		var next *vaultServer
		waitFor(t, 90*time.Second, s.name+" to hand over", func() bool {
			next, _ = c.active()
			return next != nil && next != s
		})
		return next
	}
	act := stepDown(first)
	act.cli(t, as(root).ok(), "write", path, "api_key="+secrets[1])
	var third *vaultServer
	for _, s := range c.nodes {
		if s != first && s != act {
			third = s
		}
	}
	c.crash(t, third)
	if act = stepDown(act); act != first {
		t.Fatalf("%s took over, want %s (the only other node running)", act.name, first.name)
	}
	wantRead(first, secrets[1], 2, "active again after stepping down")
	t.Logf("cached reads: %s, active again after a step-down, reads the change another node made", first.name)
	c.rejoin(t, third)
	act, _ = c.waitActive(t, 60*time.Second)
	c.waitVoters(t, third, 3)

	// A snapshot of version 2; version 3 read (and cached); the snapshot
	// restored: reads answer version 2, which storage holds again.
	snap := filepath.Join(t.TempDir(), "raft.snap")
	act.cli(t, as(root).ok(), "operator", "raft", "snapshot", "save", snap)
	act.cli(t, as(root).ok(), "write", path, "api_key="+secrets[2])
	wantRead(act, secrets[2], 3, "before the restore")
	act.cli(t, as(root).ok(), "operator", "raft", "snapshot", "restore", "-force", snap)
	var after *vaultServer
	waitFor(t, 60*time.Second, "the cluster to serve the key after the restore", func() bool {
		after, _ = c.active()
		return after != nil && after.cli(nil, as(root), "read", "-format=json", path).Code == 0 &&
			after.cli(nil, as(root), "read", "-format=json", mount+"/creds/"+name).Code == 0
	})
	// The restore ran on the active node, which stays active: its own
	// cache is the one that held version 3.
	if after != act {
		t.Fatalf("after the restore %s is active, not %s, which restored it", after.name, act.name)
	}
	wantRead(after, secrets[1], 2, "after the snapshot restore")
	t.Logf("cached reads: after a Raft snapshot restore %s reads what the snapshot holds", after.name)
}

// readVia reads path on node s with redirects off, so the answer comes from
// (or through) that node, and returns its data.
func readVia(t *testing.T, s *vaultServer, token, path string) map[string]any {
	t.Helper()
	return decodeData(t, s.cli(t, as(token).ok(), "read", "-format=json", path).Stdout)
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

func names(nodes []*vaultServer) []string {
	var out []string
	for _, s := range nodes {
		out = append(out, s.name)
	}
	sort.Strings(out)
	return out
}

// mountInfo is what `vault secrets list -detailed` shows of a mount's plugin.
type mountPlugin struct {
	PluginVersion  string `json:"plugin_version"`
	RunningVersion string `json:"running_plugin_version"`
	RunningSHA256  string `json:"running_sha256"`
}

func mountInfo(t *testing.T, s *vaultServer, token, mount string) mountPlugin {
	t.Helper()
	out := s.cli(t, as(token).ok(), "secrets", "list", "-detailed", "-format=json").Stdout
	var mounts map[string]mountPlugin
	if err := json.Unmarshal([]byte(out), &mounts); err != nil {
		t.Fatalf("secrets list on %s: %v", s.name, err)
	}
	return mounts[mount+"/"]
}
