//go:build acceptance

package acceptance

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// TestChaos drives a real Vault on raft storage with concurrent clients
// through the vault CLI (create, adopt, update, rotate, staged scheduled
// rotations, rename, reassign, delete, creds reads, agent API key issues
// from agent-creds/ and their revocation) while the emulator fails
// platform and provider requests at random (5xx, 429, hangs, answers dropped
// after the change was applied), the plugin process is killed with SIGKILL
// at random moments and the Vault server is restarted once. Then the faults
// stop, Vault's own periodic rollback clears the write-ahead log, and the
// invariant must hold:
//
//   - every key in Vault exists on the platform under its uuid, with its
//     name and the exact secret creds/<name> hands out;
//   - every platform key the mount created or adopted has its Vault entry
//     (no stray key), and the platform keys it never took keep their names;
//   - every agent uses a key that exists and that Vault manages;
//   - every agent API key on the platform that carries the mount's mark is
//     held by a lease record, and tidy finds nothing to delete; a lease
//     record without a lease in Vault comes only from an issue whose
//     answer was lost (see checkAgentKeys) and ends by itself;
//   - no secret Vault accepted is lost: a key whose last write succeeded
//     holds that secret (or a successor it accepted: a staged key, a later
//     write whose answer was lost), and nothing Vault refused appears.
//
// It runs only when GRADIENT_CHAOS_OPS is set (`make chaos`, `make
// chaos-short`); GRADIENT_CHAOS_CLIENTS (8), GRADIENT_CHAOS_SEED (the clock)
// GRADIENT_CHAOS_KILL_EVERY (the mean time between plugin kills, 10s) and
// GRADIENT_CHAOS_FAULT_EVERY (one fault per that many platform requests on
// average, 4) tune it. The seed fixes each client's sequence of operations and the
// faults' kinds; timing is not reproducible.
func TestChaos(t *testing.T) {
	ops := envInt(t, "GRADIENT_CHAOS_OPS", 0)
	if ops <= 0 {
		t.Skip("the chaos run is `make chaos` (500 operations) or `make chaos-short` (100): set GRADIENT_CHAOS_OPS")
	}
	if !findsPlugins {
		t.Skip("killing the plugin process needs Linux /proc")
	}
	clients := envInt(t, "GRADIENT_CHAOS_CLIENTS", 8)
	seed := int64(envInt(t, "GRADIENT_CHAOS_SEED", int(time.Now().UnixNano()%1_000_000)))
	killEvery, err := time.ParseDuration(envOr("GRADIENT_CHAOS_KILL_EVERY", "10s"))
	if err != nil {
		t.Fatalf("GRADIENT_CHAOS_KILL_EVERY: %v", err)
	}
	t.Logf("chaos: %d operations from %d clients, seed %d (GRADIENT_CHAOS_SEED=%d reproduces the operations and faults, not their timing)",
		ops, clients, seed, seed)
	start := time.Now()

	run := newChaosRun(t, clients, seed)
	run.faultEvery = envInt(t, "GRADIENT_CHAOS_FAULT_EVERY", 4)
	run.setUp()

	stop := make(chan struct{})
	var background sync.WaitGroup
	background.Add(2)
	go func() { defer background.Done(); run.injectFaults(stop) }()
	go func() { defer background.Done(); run.killPlugins(stop, killEvery) }()

	var wg sync.WaitGroup
	for _, c := range run.clients {
		wg.Add(1)
		go func() { defer wg.Done(); run.drive(c, ops) }()
	}
	// The Vault server restarts once, half-way, under load.
	for run.attempted.Load() < int64(ops/2) && !run.allDone(ops) {
		time.Sleep(100 * time.Millisecond)
	}
	run.restartVault()
	wg.Wait()
	close(stop)
	background.Wait()
	chaosTook := time.Since(start)

	settleStart := time.Now()
	run.settle()
	settleTook := time.Since(settleStart)

	violations := run.checkInvariant()
	run.report(ops, chaosTook, settleTook, time.Since(start), violations)
	if len(violations) > 0 {
		t.Errorf("the invariant does not hold (seed %d):\n  %s", seed, strings.Join(violations, "\n  "))
	}
}

// chaosRun is the state of one run.
type chaosRun struct {
	t       *testing.T
	v       *vaultServer
	e       *emu
	root    string
	mount   string
	seed    int64
	clients []*chaosClient
	faults  *rand.Rand // the injector's own source
	// faultEvery is the mean number of platform requests per fault.
	faultEvery int

	attempted atomic.Int64 // mutating operations started
	reads     atomic.Int64
	kills     atomic.Int64
	injected  sync.Map // fault kind -> *atomic.Int64
	down      atomic.Bool

	mu       sync.Mutex
	outcomes map[string]map[string]int // operation -> outcome -> count
	messages map[string]int            // normalized failure messages
	unclear  []string                  // failures without a status or message
	foreign  []*foreignKey
	restarts int
	promoted int // staged keys found promoted by the scheduler
	// agentKeys is what the agent API key check found (report).
	agentKeys string
}

// The agent roles of the run: leases of chaosLongRole live until a client
// revokes them; those of chaosBriefRole expire within the run, so Vault's
// expiration manager revokes them under the same faults and kills.
const (
	chaosLongRole  = "chaos-bot"
	chaosBriefRole = "chaos-brief"
)

type chaosClient struct {
	id    int
	rnd   *rand.Rand
	seq   int
	names map[string]*chaosKey
	// leases are the client's agent-creds leases of chaosLongRole that it
	// has not revoked successfully.
	leases []string
}

// chaosKey is what a client knows about one of its names: whether Vault
// holds it (yes, maybe after a failure whose outcome is unknown, no) and
// every secret Vault may rightly hold for it.
type chaosKey struct {
	provider   string
	uuid       string
	present    presence
	candidates map[string]bool
	lastOK     string // the secret of the last successful write
	staged     string
}

type presence int

const (
	absent presence = iota
	maybe
	present
)

// foreignKey was made on the platform outside Vault, for adoption.
type foreignKey struct {
	provider, uuid, name string
	tried                bool
}

func newChaosRun(t *testing.T, clients int, seed int64) *chaosRun {
	r := &chaosRun{t: t, seed: seed, mount: "chaos", faults: rand.New(rand.NewSource(seed)),
		outcomes: map[string]map[string]int{}, messages: map[string]int{}}
	for i := range clients {
		r.clients = append(r.clients, &chaosClient{id: i, rnd: rand.New(rand.NewSource(seed + int64(i) + 1)), names: map[string]*chaosKey{}})
	}
	return r
}

// setUp starts Vault on raft with the plugin registered with the test
// tuning (1 s rotation tick and minimum period, WAL rollback after 5 s), the
// emulator and the mount; each client gets two keys per provider, the first
// of each with an agent, and two platform keys made outside Vault to adopt;
// one more agent (on a key of the first client) gets the agent API keys of
// the two agent roles, and each client one lease of the long one.
func (r *chaosRun) setUp() {
	t := r.t
	r.v = startRaftVault(t)
	r.root = r.v.rootToken
	agentKeysAgent := ""
	res := r.v.vault(t, as(r.root), "plugin", "register", "-sha256="+pluginSHA256, "-version="+pluginVersion,
		"-env="+testTick, "-env="+testMinPeriod, "-env="+testWALMinAge, "secret", pluginName)
	if res.Code != 0 {
		t.Fatalf("registering the plugin with the test tuning: %s", res)
	}
	r.e = newEmulator(t)
	if err := r.v.mountPlugin(t, r.mount, r.e); err != nil {
		t.Fatal(err)
	}
	// Hangs cost a request timeout each: keep it short.
	r.v.vault(t, as(r.root).ok(), "write", r.mount+"/config", "request_timeout=3s")
	for _, c := range r.clients {
		for _, provider := range []string{"anthropic", "openai"} {
			for j := range 2 {
				name := c.newName("home")
				secret := newKey(provider)
				d := r.v.writeData(t, r.root, r.mount+"/keys/"+name, "provider="+provider, "api_key="+secret)
				c.names[name] = &chaosKey{provider: provider, uuid: str(d, "uuid"), present: present,
					candidates: map[string]bool{secret: true}, lastOK: secret}
				if j == 0 {
					r.e.createAgent(t, "agent-"+name, provider, str(d, "uuid"))
					if agentKeysAgent == "" {
						agentKeysAgent = r.e.createAgent(t, "agent-keys-"+name, provider, str(d, "uuid"))
					}
				}
			}
			name := fmt.Sprintf("foreign-%d-%s-%s", c.id, provider, randomString(lowerAln, 4))
			uuid := r.e.createPlatformKey(t, provider, name, newKey(provider))
			r.foreign = append(r.foreign, &foreignKey{provider: provider, uuid: uuid, name: name})
		}
	}
	r.v.vault(t, as(r.root).ok(), "write", r.mount+"/agent-roles/"+chaosLongRole, "agent_uuid="+agentKeysAgent, "ttl=1h")
	r.v.vault(t, as(r.root).ok(), "write", r.mount+"/agent-roles/"+chaosBriefRole, "agent_uuid="+agentKeysAgent, "ttl=8s", "max_ttl=8s")
	// A lease for each client from the start, so that revocations run
	// under the faults even in a short run.
	for _, c := range r.clients {
		c.leases = append(c.leases, r.readAgentLease(r.mount+"/agent-creds/"+chaosLongRole))
	}
}

// readAgentLease issues an agent key before the chaos starts and returns
// its lease id.
func (r *chaosRun) readAgentLease(path string) string {
	var issued agentCreds
	out := r.v.vault(r.t, as(r.root).ok(), "read", "-format=json", path).Stdout
	if err := json.Unmarshal([]byte(out), &issued); err != nil || issued.LeaseID == "" {
		r.t.Fatalf("issuing an agent key at %s: %v", path, err)
	}
	mustNotLeak(issued.Data.APIKey)
	return issued.LeaseID
}

func (c *chaosClient) newName(kind string) string {
	c.seq++
	return fmt.Sprintf("%s-%d-%d-%s", kind, c.id, c.seq, randomString(lowerAln, 4))
}

// The operations, with their weights.
var chaosOps = []struct {
	name   string
	weight int
}{
	{"create", 22}, {"adopt", 4}, {"update", 14}, {"rotate", 10}, {"stage", 12},
	{"rename", 8}, {"reassign", 8}, {"delete", 12}, {"read", 10},
	// Agent API keys: one platform call each, so about a fifth of the
	// operations adds little time to the run.
	{"issue", 16}, {"revoke", 8},
}

func (r *chaosRun) allDone(ops int) bool { return r.attempted.Load() >= int64(ops) }

// drive runs one client's operations until ops mutating operations have
// been started across all clients. Operations on one name are sequential:
// every name belongs to one client.
func (r *chaosRun) drive(c *chaosClient, ops int) {
	total := 0
	for _, op := range chaosOps {
		total += op.weight
	}
	for !r.allDone(ops) {
		for r.down.Load() {
			time.Sleep(200 * time.Millisecond)
		}
		pick := c.rnd.Intn(total)
		for _, op := range chaosOps {
			if pick -= op.weight; pick < 0 {
				r.do(c, op.name, ops)
				break
			}
		}
	}
}

// pickName picks one of the client's names that may exist, preferring those
// that surely do; "" when there is none. provider, when set, filters.
func (c *chaosClient) pickName(provider, except string) string {
	var sure, unsure []string
	for name, k := range c.names {
		if name == except || (provider != "" && k.provider != provider) {
			continue
		}
		switch k.present {
		case present:
			sure = append(sure, name)
		case maybe:
			unsure = append(unsure, name)
		}
	}
	sort.Strings(sure)
	sort.Strings(unsure)
	if len(sure) > 0 && (len(unsure) == 0 || c.rnd.Intn(5) > 0) {
		return sure[c.rnd.Intn(len(sure))]
	}
	if len(unsure) > 0 {
		return unsure[c.rnd.Intn(len(unsure))]
	}
	return ""
}

// do runs one operation of kind op and updates the client's model from its
// outcome.
func (r *chaosRun) do(c *chaosClient, op string, ops int) {
	m := r.mount
	if op == "read" {
		name := c.pickName("", "")
		if name == "" {
			return
		}
		r.reads.Add(1)
		r.record(op, r.cli("read", "-format=json", m+"/creds/"+name))
		return
	}
	if r.attempted.Add(1) > int64(ops) {
		return
	}
	switch op {
	case "create":
		provider := []string{"anthropic", "openai"}[c.rnd.Intn(2)]
		name, secret := c.newName("key"), newKey(provider)
		res := r.cli("write", "-format=json", m+"/keys/"+name, "provider="+provider, "api_key="+secret)
		k := &chaosKey{provider: provider, candidates: map[string]bool{secret: true}}
		switch r.record(op, res) {
		case "ok":
			k.present, k.lastOK, k.uuid = present, secret, str(dataOf(res.Stdout), "uuid")
		case "refused":
			k.present = absent
		default:
			k.present = maybe
		}
		c.names[name] = k
	case "adopt":
		var f *foreignKey
		r.mu.Lock()
		for _, x := range r.foreign {
			if !x.tried && strings.HasPrefix(x.name, fmt.Sprintf("foreign-%d-", c.id)) {
				f, x.tried = x, true
				break
			}
		}
		r.mu.Unlock()
		if f == nil {
			r.attempted.Add(-1)
			return
		}
		name, secret := c.newName("adopted"), newKey(f.provider)
		res := r.cli("write", "-format=json", m+"/keys/"+name, "provider="+f.provider, "api_key="+secret, "uuid="+f.uuid)
		k := &chaosKey{provider: f.provider, uuid: f.uuid, candidates: map[string]bool{secret: true}}
		switch r.record(op, res) {
		case "ok":
			k.present, k.lastOK = present, secret
		case "refused":
			k.present = absent
		default:
			k.present = maybe
		}
		c.names[name] = k
	case "update", "rotate", "stage":
		name := c.pickName("", "")
		if name == "" {
			r.attempted.Add(-1)
			return
		}
		k := c.names[name]
		secret := newKey(k.provider)
		var res cliResult
		switch op {
		case "update":
			res = r.cli("write", m+"/keys/"+name, "api_key="+secret)
		case "rotate":
			res = r.cli("write", m+"/keys/"+name+"/rotate", "api_key="+secret)
		case "stage":
			period := fmt.Sprintf("rotation_period=%ds", 2+c.rnd.Intn(5))
			res = r.cli("write", m+"/keys/"+name, period, "next_api_key="+secret)
		}
		switch outcome := r.record(op, res); {
		case outcome == "refused":
		case op == "stage":
			// The scheduler promotes it when the period ends. Staging
			// writes storage only: it says nothing of whether the
			// platform key survived an earlier delete whose outcome is
			// unknown, and that delete's rollback may still remove the
			// entry, so the key's presence stays as it was.
			k.candidates[secret] = true
			if outcome == "ok" {
				k.staged = secret
			}
		default:
			k.candidates[secret] = true
			if outcome == "ok" {
				k.present, k.lastOK = present, secret
			}
		}
	case "rename":
		name := c.pickName("", "")
		if name == "" {
			r.attempted.Add(-1)
			return
		}
		k := c.names[name]
		newName := c.newName("renamed")
		res := r.cli("write", m+"/rename/"+name, "new_name="+newName)
		moved := *k
		moved.candidates = cloneSet(k.candidates)
		switch r.record(op, res) {
		case "ok":
			moved.present = present
			c.names[newName] = &moved
			k.present = absent
		case "refused":
		default:
			moved.present = maybe
			c.names[newName] = &moved
			if k.present == present {
				k.present = maybe
			}
		}
	case "reassign":
		from := c.pickName("", "")
		if from == "" {
			r.attempted.Add(-1)
			return
		}
		to := c.pickName(c.names[from].provider, from)
		if to == "" {
			r.attempted.Add(-1)
			return
		}
		r.record(op, r.cli("write", m+"/keys/"+from+"/reassign", "to="+to))
	case "issue":
		role := pick(c.rnd, chaosLongRole, chaosBriefRole)
		res := r.cli("read", "-format=json", m+"/agent-creds/"+role)
		if r.record(op, res) == "ok" {
			var issued agentCreds
			if err := json.Unmarshal([]byte(res.Stdout), &issued); err == nil && issued.LeaseID != "" {
				mustNotLeak(issued.Data.APIKey)
				// The brief role's leases end by themselves.
				if role == chaosLongRole {
					c.leases = append(c.leases, issued.LeaseID)
				}
			}
		}
	case "revoke":
		if len(c.leases) == 0 {
			r.attempted.Add(-1)
			return
		}
		i := c.rnd.Intn(len(c.leases))
		// -sync: the plugin's delete on the platform is part of the answer,
		// so that its failures under the faults show in the outcomes. A
		// failed revocation leaves the lease (Vault revokes it at its
		// expiry); the client may try it again. Vault answers a failed
		// revocation with a 400, which record counts as refused.
		if r.record(op, r.cli("lease", "revoke", "-sync", c.leases[i])) == "ok" {
			c.leases = slices.Delete(c.leases, i, i+1)
		}
	case "delete":
		name := c.pickName("", "")
		if name == "" {
			r.attempted.Add(-1)
			return
		}
		k := c.names[name]
		switch r.record(op, r.cli("delete", m+"/keys/"+name)) {
		case "ok":
			k.present = absent
		case "refused":
		default:
			if k.present == present {
				k.present = maybe
			}
		}
	}
}

func cloneSet(m map[string]bool) map[string]bool {
	out := map[string]bool{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// cli runs the vault CLI as root without failing the test.
func (r *chaosRun) cli(args ...string) cliResult { return r.v.vault(nil, as(r.root), args...) }

func dataOf(stdout string) map[string]any {
	var secret struct {
		Data map[string]any `json:"data"`
	}
	_ = json.Unmarshal([]byte(stdout), &secret)
	return secret.Data
}

var statusCode = regexp.MustCompile(`Code: (\d{3})`)

// record classifies and counts an outcome: ok; refused (a 4xx other than
// 429: the request changed nothing); rate-limited (429, or the plugin's
// "upstream rate limited", which Vault answers with a 502); upstream (5xx);
// unavailable (no HTTP answer: Vault restarting). Only "ok" and "refused"
// are certain.
func (r *chaosRun) record(op string, res cliResult) string {
	outcome := "ok"
	if res.Code != 0 {
		outcome = "unavailable"
		if strings.Contains(res.Stderr, "No value found") {
			outcome = "refused" // a read of a name that is not there
		} else if m := statusCode.FindStringSubmatch(res.Stderr); m != nil {
			code, _ := strconv.Atoi(m[1])
			switch {
			case code == http.StatusTooManyRequests || strings.Contains(res.Stderr, "rate limited"):
				outcome = "rate-limited"
			case code >= 500:
				outcome = "upstream"
			default:
				outcome = "refused"
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.outcomes[op] == nil {
		r.outcomes[op] = map[string]int{}
	}
	r.outcomes[op][outcome]++
	if outcome != "ok" {
		msg := failureMessage(res.Stderr)
		r.messages[fmt.Sprintf("%s %s: %s", op, outcome, msg)]++
		if msg == "" || (outcome == "unavailable" && !strings.Contains(res.Stderr, "connection refused") && !strings.Contains(res.Stderr, "EOF")) {
			r.unclear = append(r.unclear, fmt.Sprintf("%s: exit %d: %.300s", op, res.Code, res.Stderr))
		}
	}
	return outcome
}

var (
	uuidLike   = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	nameLike   = regexp.MustCompile(`\b(key|home|renamed|adopted|foreign)-[a-z0-9-]+`)
	numberLike = regexp.MustCompile(`\b\d+(\.\d+)?(ms|s|µs)?\b`)
	requestID  = regexp.MustCompile(`request[ _]id[^,;)]*`)
)

// failureMessage is the innermost error Vault returned (the last "* "
// line), with uuids, names and numbers replaced so that equal failures count
// together.
func failureMessage(stderr string) string {
	msg := ""
	for _, line := range strings.Split(stderr, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "* ") {
			msg = strings.TrimPrefix(line, "* ")
		}
	}
	if msg == "" {
		for _, line := range strings.Split(stderr, "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "URL:") && !strings.HasPrefix(line, "Code:") {
				msg = line
				break
			}
		}
	}
	msg = uuidLike.ReplaceAllString(msg, "<uuid>")
	msg = nameLike.ReplaceAllString(msg, "<name>")
	msg = requestID.ReplaceAllString(msg, "request id <id>")
	msg = numberLike.ReplaceAllString(msg, "N")
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}

// injectFaults queues one fault of a random kind for every faultEvery
// platform requests on average (the emulator counts them), so the share of
// faulty answers stays the same whatever the pace; each fault hits the next
// request of its method.
func (r *chaosRun) injectFaults(stop <-chan struct{}) {
	kinds := []struct {
		label string
		fault func(rnd *rand.Rand) emulator.Fault
	}{
		{"5xx", func(rnd *rand.Rand) emulator.Fault {
			return emulator.Fault{Method: pick(rnd, "GET", "POST", "PUT", "DELETE"), Path: "/v2/gen-ai/", Mode: "status", Status: []int{500, 502, 503}[rnd.Intn(3)]}
		}},
		{"429", func(rnd *rand.Rand) emulator.Fault {
			return emulator.Fault{Method: pick(rnd, "GET", "POST", "PUT", "DELETE"), Path: "/v2/gen-ai/", Mode: "status", Status: http.StatusTooManyRequests}
		}},
		{"hang", func(rnd *rand.Rand) emulator.Fault {
			return emulator.Fault{Method: pick(rnd, "GET", "POST", "PUT", "DELETE"), Path: "/v2/gen-ai/", Mode: "hang"}
		}},
		{"dropped after apply", func(rnd *rand.Rand) emulator.Fault {
			return emulator.Fault{Method: pick(rnd, "POST", "PUT", "DELETE"), Path: "/v2/gen-ai/", Mode: "drop"}
		}},
		{"provider 5xx", func(rnd *rand.Rand) emulator.Fault {
			return emulator.Fault{Method: "GET", Path: pick(rnd, "/anthropic/", "/openai/"), Mode: "status", Status: 503}
		}},
	}
	weights := []int{30, 20, 15, 30, 5}
	next := platformRequests(r.e) + 1 + r.faults.Intn(2*r.faultEvery)
	for {
		select {
		case <-stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
		if platformRequests(r.e) < next {
			continue
		}
		next += 1 + r.faults.Intn(2*r.faultEvery)
		n := r.faults.Intn(100)
		for i, w := range weights {
			if n -= w; n < 0 {
				r.e.InjectFault(kinds[i].fault(r.faults))
				counter, _ := r.injected.LoadOrStore(kinds[i].label, &atomic.Int64{})
				counter.(*atomic.Int64).Add(1)
				break
			}
		}
	}
}

// platformRequests is how many requests reached the emulated platform.
func platformRequests(e *emu) int {
	n := 0
	for route, c := range e.Counts() {
		if strings.Contains(route, " /v2/") {
			n += c
		}
	}
	return n
}

func pick(rnd *rand.Rand, options ...string) string { return options[rnd.Intn(len(options))] }

// killPlugins sends SIGKILL to the plugin's processes at random moments,
// killEvery apart on average; Vault starts the plugin again on the next
// request.
func (r *chaosRun) killPlugins(stop <-chan struct{}, killEvery time.Duration) {
	rnd := rand.New(rand.NewSource(r.seed - 1))
	for {
		wait := time.Duration(float64(killEvery) * (0.5 + rnd.Float64()))
		select {
		case <-stop:
			return
		case <-time.After(wait):
		}
		if r.down.Load() {
			continue
		}
		for _, pid := range r.v.pluginPIDs() {
			if killProcess(pid) == nil {
				r.kills.Add(1)
			}
		}
	}
}

// restartVault restarts the server under load. The restart also turns on
// the raw storage endpoint, through which settle reads the write-ahead log.
func (r *chaosRun) restartVault() {
	t := r.t
	path := strings.TrimPrefix(r.v.args[1], "-config=")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("raw_storage_endpoint = true\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	r.down.Store(true)
	began := time.Now()
	r.v.restart(t)
	r.down.Store(false)
	r.mu.Lock()
	r.restarts++
	r.mu.Unlock()
	t.Logf("chaos: Vault restarted under load in %s", time.Since(began).Round(100*time.Millisecond))
}

// settle ends the chaos: faults left in the emulator's queue are used up by
// requests that change nothing, scheduled rotation is paused on every key
// (so that none is in flight when the invariant is checked), and Vault's
// periodic rollback (every minute, entries older than 5 s) is awaited until
// the write-ahead log is empty.
func (r *chaosRun) settle() {
	t := r.t
	r.drainFaults()
	keys := r.v.list(t, r.root, r.mount+"/keys")
	var wg sync.WaitGroup
	work := make(chan string)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				// A paused key keeps its staged successor; the check
				// accepts either.
				if res := r.cli("write", r.mount+"/keys/"+name, "disable_automated_rotation=true"); res.Code != 0 {
					t.Errorf("pausing rotation of %s after the faults stopped:\n%s", name, res)
				}
			}
		}()
	}
	for _, name := range keys {
		work <- name
	}
	close(work)
	wg.Wait()

	mounts := r.v.readData(t, r.root, "sys/mounts/"+r.mount)
	walPath := "sys/raw/logical/" + str(mounts, "uuid") + "/wal/"
	deadline := time.Now().Add(4 * time.Minute)
	began := time.Now()
	for {
		res := r.cli("list", "-format=json", walPath)
		var entries []string
		if res.Code == 0 {
			if err := json.Unmarshal([]byte(res.Stdout), &entries); err != nil {
				t.Fatalf("listing the write-ahead log: %v\n%s", err, res.Stdout)
			}
		} else if !strings.Contains(res.Stderr, "No value found") && strings.TrimSpace(res.Stdout) != "{}" {
			t.Fatalf("listing the write-ahead log:\n%s", res)
		}
		if len(entries) == 0 {
			t.Logf("chaos: the write-ahead log is empty %s after the faults stopped", time.Since(began).Round(time.Second))
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the write-ahead log still holds %d entries 4 minutes after the faults stopped: rollback does not finish them", len(entries))
			for _, id := range entries {
				out := r.cli("read", "-format=json", walPath+id)
				t.Logf("wal %s: %.600s", id, out.Stdout)
			}
			return
		}
		time.Sleep(2 * time.Second)
	}
}

// drainFaults sends, for each kind of request the injector targets, requests
// that change nothing until one is answered normally: a fault takes the
// first matching request, so after that answer none is left for it.
func (r *chaosRun) drainFaults() {
	t := r.t
	client := &http.Client{Timeout: 2 * time.Second}
	none := "00000000-0000-4000-8000-000000000000"
	probes := []struct{ method, path, body string }{
		{"GET", "/v2/gen-ai/anthropic/keys?per_page=1", ""},
		{"POST", "/v2/gen-ai/anthropic/keys", `{}`},
		{"PUT", "/v2/gen-ai/anthropic/keys/" + none, `{}`},
		{"DELETE", "/v2/gen-ai/anthropic/keys/" + none, ""},
		{"GET", "/anthropic/v1/models", ""},
		{"GET", "/openai/v1/models", ""},
	}
	for _, p := range probes {
		for attempt := 0; ; attempt++ {
			if attempt > 500 {
				t.Fatalf("faults for %s %s never drained", p.method, p.path)
			}
			req, _ := http.NewRequest(p.method, r.e.url+p.path, strings.NewReader(p.body))
			req.Header.Set("Authorization", "Bearer "+r.e.token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				continue // dropped or hung: a fault was used up
			}
			resp.Body.Close()
			if resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
				break
			}
		}
	}
}

// checkInvariant compares Vault with the emulator's state and with what the
// clients know, and returns every violation.
func (r *chaosRun) checkInvariant() []string {
	t := r.t
	var bad []string
	st := r.e.State()
	platform := map[string]emulator.KeyState{}
	providerOf := map[string]string{}
	for _, k := range st.AnthropicKeys {
		platform[k.UUID], providerOf[k.UUID] = k, "anthropic"
	}
	for _, k := range st.OpenAIKeys {
		platform[k.UUID], providerOf[k.UUID] = k, "openai"
	}

	type held struct{ uuid, provider, secret string }
	vault := map[string]held{}
	byUUID := map[string][]string{}
	for _, name := range r.v.list(t, r.root, r.mount+"/keys") {
		read := r.v.readData(t, r.root, r.mount+"/keys/"+name)
		creds := r.v.readData(t, r.root, r.mount+"/creds/"+name)
		h := held{uuid: str(read, "uuid"), provider: str(read, "provider"), secret: str(creds, "api_key")}
		vault[name] = h
		byUUID[h.uuid] = append(byUUID[h.uuid], name)
		pk, ok := platform[h.uuid]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("Vault key %s (uuid %s) does not exist on the platform", name, h.uuid))
		case providerOf[h.uuid] != h.provider:
			bad = append(bad, fmt.Sprintf("Vault key %s is %s, platform key %s is %s", name, h.provider, h.uuid, providerOf[h.uuid]))
		case pk.Name != name:
			bad = append(bad, fmt.Sprintf("Vault key %s: platform key %s is named %s", name, h.uuid, pk.Name))
		case pk.Secret != h.secret:
			bad = append(bad, fmt.Sprintf("Vault key %s: the platform holds another secret (hint %s) than creds/ hands out (hint %s)",
				name, chaosHint(pk.Secret), chaosHint(h.secret)))
		}
	}
	for uuid, names := range byUUID {
		if len(names) > 1 {
			bad = append(bad, fmt.Sprintf("platform key %s is stored under %d names: %v", uuid, len(names), names))
		}
	}

	// No stray key: every platform key is Vault's, or one made outside
	// Vault that it never took, under its own name.
	foreign := map[string]*foreignKey{}
	for _, f := range r.foreign {
		foreign[f.uuid] = f
	}
	for uuid, pk := range platform {
		if len(byUUID[uuid]) > 0 {
			continue
		}
		if f := foreign[uuid]; f != nil {
			if pk.Name != f.name {
				bad = append(bad, fmt.Sprintf("platform key %s, made outside Vault as %s and not adopted, is named %s", uuid, f.name, pk.Name))
			}
			continue
		}
		bad = append(bad, fmt.Sprintf("stray platform key %s named %s (created %s) has no Vault entry", uuid, pk.Name, pk.CreatedAt.Format(time.RFC3339Nano)))
	}

	for _, a := range st.Agents {
		uuid := a.AnthropicKeyUUID + a.OpenAIKeyUUID
		switch {
		case uuid == "":
			bad = append(bad, fmt.Sprintf("agent %s lost its key", a.Name))
		case platform[uuid].UUID == "":
			bad = append(bad, fmt.Sprintf("agent %s uses key %s, which does not exist", a.Name, uuid))
		case len(byUUID[uuid]) == 0:
			bad = append(bad, fmt.Sprintf("agent %s uses key %s, which Vault does not manage", a.Name, uuid))
		}
	}

	// No accepted secret lost, nothing refused kept.
	known := map[string]bool{}
	for _, c := range r.clients {
		for name, k := range c.names {
			known[name] = true
			h, inVault := vault[name]
			switch {
			case k.present == present && !inVault:
				bad = append(bad, fmt.Sprintf("LOST: key %s, last written successfully (hint %s), is not in Vault", name, chaosHint(k.lastOK)))
			case k.present == absent && inVault:
				bad = append(bad, fmt.Sprintf("key %s is in Vault though it was deleted or never accepted", name))
			case inVault && !k.candidates[h.secret]:
				bad = append(bad, fmt.Sprintf("key %s holds a secret (hint %s) that no write of it sent", name, chaosHint(h.secret)))
			case inVault && k.uuid != "" && h.uuid != k.uuid:
				bad = append(bad, fmt.Sprintf("key %s is platform key %s, was %s", name, h.uuid, k.uuid))
			}
			if inVault && k.staged != "" && h.secret == k.staged {
				r.promoted++
			}
		}
	}
	for name := range vault {
		if !known[name] {
			bad = append(bad, fmt.Sprintf("key %s is in Vault but no client wrote it", name))
		}
	}
	bad = append(bad, r.checkAgentKeys()...)
	slices.Sort(bad)
	return bad
}

// checkAgentKeys: no agent API key without a lease record. Every key on the
// platform named with the mount's mark has its record
// (agent-leases/<role>/<key uuid>); tidy then runs and must find nothing to
// delete. Records are matched with Vault's leases too (their entries in
// Vault's expiration storage name the key in their internal data), read
// through the raw storage endpoint, on since the restart.
//
// A record without a lease is possible, and not a violation: when the
// plugin dies after storing the record but before Vault registers the
// lease (the plugin cannot see that registration; every dynamic secrets
// engine has this window), the key stays, held by its record, until tidy
// ends the record an hour after its lease's end (lease_ends: the issue plus
// ttl, moved by renewals, never past expires_by, the issue plus max_ttl).
// The check bounds them: there are no more than the issues whose answer was
// lost, and each has a lease_ends no later than its expires_by. (An hour is
// longer than the run, so tidy afterwards still finds nothing to delete.)
func (r *chaosRun) checkAgentKeys() []string {
	t := r.t
	var bad []string
	mountUUID := str(r.v.readData(t, r.root, "sys/mounts/"+r.mount), "uuid")
	raw := "sys/raw/logical/" + mountUUID + "/"
	mark := r.rawRead(raw + "agent-keys/mount-id")
	if mark == "" {
		return []string{"the mount has no agent key mark: it never issued an agent API key"}
	}

	records := map[string]string{} // key uuid -> role
	for _, folder := range r.rawList(raw + "agent-leases/") {
		role := strings.TrimSuffix(folder, "/")
		for _, uuid := range r.rawList(raw + "agent-leases/" + role + "/") {
			records[uuid] = role
		}
	}
	leased := map[string]bool{} // key uuids that a lease in Vault holds
	vaultLeases := 0
	expire := "sys/raw/sys/expire/id/" + r.mount + "/agent-creds/"
	for _, folder := range r.rawList(expire) {
		for _, id := range r.rawList(expire + folder) {
			value := r.rawRead(expire + folder + id)
			var entry struct {
				Secret struct {
					InternalData map[string]any `json:"internal_data"`
				} `json:"secret"`
			}
			if err := json.Unmarshal([]byte(value), &entry); err != nil {
				bad = append(bad, fmt.Sprintf("lease %s%s: its entry does not decode: %v", folder, id, err))
				continue
			}
			uuid, _ := entry.Secret.InternalData["key_uuid"].(string)
			leased[strings.ToLower(uuid)] = true
			vaultLeases++
		}
	}

	marked, onPlatform := 0, map[string]bool{}
	for _, k := range r.e.AgentAPIKeys() {
		onPlatform[k.UUID] = true
		if !strings.HasPrefix(k.Name, "vault-"+mark+"-") {
			continue
		}
		marked++
		if records[k.UUID] == "" {
			bad = append(bad, fmt.Sprintf("agent API key %s named %s (created %s) has no lease record", k.UUID, k.Name, k.CreatedAt.Format(time.RFC3339Nano)))
		}
	}
	gone := 0
	var unleased []string
	for uuid, role := range records {
		if !leased[uuid] {
			value := r.rawRead(raw + "agent-leases/" + role + "/" + uuid)
			var rec struct {
				ExpiresBy time.Time `json:"expires_by"`
				LeaseEnds time.Time `json:"lease_ends"`
			}
			switch err := json.Unmarshal([]byte(value), &rec); {
			case err != nil || rec.ExpiresBy.IsZero():
				bad = append(bad, fmt.Sprintf("the lease record of agent API key %s (role %s) has no lease in Vault and no expires_by (%v): tidy would never end it", uuid, role, err))
			case rec.LeaseEnds.IsZero() || rec.LeaseEnds.After(rec.ExpiresBy):
				bad = append(bad, fmt.Sprintf("the lease record of agent API key %s (role %s) has no lease in Vault and its lease_ends %s is missing or past its expires_by %s: tidy would end it only an hour past max_ttl", uuid, role, rec.LeaseEnds, rec.ExpiresBy))
			}
			unleased = append(unleased, fmt.Sprintf("%s (role %s, key on the platform: %v)", uuid, role, onPlatform[uuid]))
		}
		if !onPlatform[uuid] {
			gone++ // deleted, its record's delete still to come with a retried revocation
		}
	}
	r.mu.Lock()
	lost := r.outcomes["issue"]["upstream"] + r.outcomes["issue"]["unavailable"]
	r.mu.Unlock()
	if len(unleased) > lost {
		bad = append(bad, fmt.Sprintf("%d lease records have no lease in Vault, more than the %d issues whose answer was lost: %v", len(unleased), lost, unleased))
	}

	res := r.cli("write", "-format=json", "-f", r.mount+"/agent-creds-tidy")
	deleted, _ := dataOf(res.Stdout)["deleted"].([]any)
	switch {
	case res.Code != 0:
		bad = append(bad, fmt.Sprintf("agent-creds-tidy after the run failed:\n%s", res))
	case len(deleted) > 0:
		bad = append(bad, fmt.Sprintf("agent-creds-tidy after the run deleted %d keys that no lease held: %v", len(deleted), deleted))
	}
	r.agentKeys = fmt.Sprintf("%d on the platform with the mount's mark, %d lease records (%d of them for a key already deleted), %d leases in Vault; tidy afterwards deleted %d; records without a lease (an issue's answer lost after its record was stored): %d %v",
		marked, len(records), gone, vaultLeases, len(deleted), len(unleased), unleased)
	return bad
}

// rawRead is the value stored at path, read through sys/raw as stored:
// compressed=false, or Vault takes a value whose first byte is one of its
// compression canaries (the mark "4..." starts with LZ4's) for compressed
// data and fails to decompress it.
func (r *chaosRun) rawRead(path string) string {
	res := r.cli("read", "-format=json", path, "compressed=false")
	if res.Code != 0 {
		r.t.Errorf("reading %s through sys/raw:\n%s", path, res)
	}
	return str(dataOf(res.Stdout), "value")
}

// rawList lists a folder through sys/raw; nil when it is empty or absent.
func (r *chaosRun) rawList(path string) []string {
	res := r.cli("list", "-format=json", path)
	if res.Code != 0 {
		if !strings.Contains(res.Stderr, "No value found") {
			r.t.Fatalf("listing %s:\n%s", path, res)
		}
		return nil
	}
	var entries []string
	if strings.TrimSpace(res.Stdout) == "{}" {
		return nil
	}
	if err := json.Unmarshal([]byte(res.Stdout), &entries); err != nil {
		r.t.Fatalf("listing %s: %v\n%s", path, err, res.Stdout)
	}
	return entries
}

// report logs the figures of the run.
func (r *chaosRun) report(ops int, chaosTook, settleTook, total time.Duration, violations []string) {
	t := r.t
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "chaos report (seed %d, %d clients)\n", r.seed, len(r.clients))
	byOutcome := map[string]int{}
	var opsNames []string
	for op := range r.outcomes {
		opsNames = append(opsNames, op)
	}
	sort.Strings(opsNames)
	attempted := 0
	for _, op := range opsNames {
		n := 0
		var parts []string
		for _, o := range []string{"ok", "refused", "rate-limited", "upstream", "unavailable"} {
			if c := r.outcomes[op][o]; c > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", o, c))
				n += c
				if op != "read" {
					byOutcome[o] += c
				}
			}
		}
		if op != "read" {
			attempted += n
		}
		fmt.Fprintf(&b, "  %-9s %4d: %s\n", op, n, strings.Join(parts, ", "))
	}
	failed := attempted - byOutcome["ok"]
	fmt.Fprintf(&b, "  mutating operations (issue and revoke of agent API keys included) attempted %d, succeeded %d, failed %d (refused 4xx %d, rate-limited 429 %d, upstream 5xx %d, Vault unavailable %d); creds reads %d\n",
		attempted, byOutcome["ok"], failed, byOutcome["refused"], byOutcome["rate-limited"], byOutcome["upstream"], byOutcome["unavailable"], r.reads.Load())
	fmt.Fprintf(&b, "  failures without a clear error: %d\n", len(r.unclear))
	for _, u := range r.unclear {
		fmt.Fprintf(&b, "    %s\n", u)
	}
	var injected []string
	r.injected.Range(func(k, v any) bool {
		injected = append(injected, fmt.Sprintf("%s %d", k, v.(*atomic.Int64).Load()))
		return true
	})
	sort.Strings(injected)
	statuses := r.e.Statuses()
	fmt.Fprintf(&b, "  faults injected: %s; plugin SIGKILLs %d; Vault restarts %d\n", strings.Join(injected, ", "), r.kills.Load(), r.restarts)
	fmt.Fprintf(&b, "  platform answers by status: %v (429s seen: %d; 0 = connection dropped or abandoned)\n", statuses, statuses[http.StatusTooManyRequests])
	fmt.Fprintf(&b, "  staged keys promoted by the scheduler and held at the end: %d\n", r.promoted)
	fmt.Fprintf(&b, "  agent API keys at the end: %s\n", r.agentKeys)
	fmt.Fprintf(&b, "  durations: chaos %s, settle (drain faults, pause rotation, wait for rollback) %s, total %s\n",
		chaosTook.Round(time.Second), settleTook.Round(time.Second), total.Round(time.Second))
	if len(violations) == 0 {
		fmt.Fprintf(&b, "  invariant: HOLDS (%d Vault keys checked against %d platform keys and %d agents)\n",
			len(r.v.list(t, r.root, r.mount+"/keys")), len(r.e.State().AnthropicKeys)+len(r.e.State().OpenAIKeys), len(r.e.State().Agents))
	} else {
		fmt.Fprintf(&b, "  invariant: VIOLATED (%d)\n", len(violations))
	}
	type msg struct {
		text string
		n    int
	}
	var msgs []msg
	for text, n := range r.messages {
		msgs = append(msgs, msg{text, n})
	}
	sort.Slice(msgs, func(i, j int) bool {
		return msgs[i].n > msgs[j].n || msgs[i].n == msgs[j].n && msgs[i].text < msgs[j].text
	})
	fmt.Fprintf(&b, "  failure messages (most frequent first):\n")
	for i, m := range msgs {
		if i == 25 {
			fmt.Fprintf(&b, "    ... %d more\n", len(msgs)-25)
			break
		}
		fmt.Fprintf(&b, "    %4d  %s\n", m.n, m.text)
	}
	t.Log(b.String())
	if path := os.Getenv("GRADIENT_CHAOS_REPORT"); path != "" {
		_ = os.WriteFile(path, []byte(b.String()), 0o600)
	}
}

// chaosHint is the last four characters of a secret, "" for none.
func chaosHint(s string) string {
	if len(s) < 8 {
		return "<" + strconv.Itoa(len(s)) + " characters>"
	}
	return s[len(s)-4:]
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q is not a number", name, v)
	}
	return n
}
