#!/usr/bin/env bash
# Runs a local Vault dev server with the Gradient plugin mounted at gradient/.
#
# Started by `make dev` (which builds bin/plugins/vault-plugin-secrets-gradient
# and bin/gradient-emulator first). It:
#   - gets a Vault binary through scripts/get-vault.sh,
#   - starts the Gradient emulator unless DIGITALOCEAN_TOKEN is set,
#   - starts `vault server -dev` on 127.0.0.1,
#   - registers the plugin by sha256 with its version, enables it and
#     configures it against the emulator (or the real API and providers),
#   - prints the exports and a session to copy, then stays in the foreground
#     until Ctrl-C or SIGTERM, and stops everything it started.
#
# Environment:
#   VAULT_PORT          Vault listener port (default 8200)
#   EMULATOR_PORT       emulator listener port (default 8300)
#   DEV_ROOT_TOKEN      root token of the dev server (default root)
#   MOUNT               mount path of the plugin (default gradient)
#   DIGITALOCEAN_TOKEN  when set: configure the real DigitalOcean API and verify
#                       keys against the real Anthropic and OpenAI APIs; no emulator
#   VERSION, PLUGIN_DIR, PLUGIN_NAME, EMULATOR_BIN  set by the Makefile
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${VERSION:-v0.1.0}
PLUGIN_NAME=${PLUGIN_NAME:-vault-plugin-secrets-gradient}
PLUGIN_DIR=${PLUGIN_DIR:-$root/bin/plugins}
EMULATOR_BIN=${EMULATOR_BIN:-$root/bin/gradient-emulator}
VAULT_PORT=${VAULT_PORT:-8200}
EMULATOR_PORT=${EMULATOR_PORT:-8300}
DEV_ROOT_TOKEN=${DEV_ROOT_TOKEN:-root}
MOUNT=${MOUNT:-gradient}
EMULATOR_TOKEN=emulator-token
REAL_TOKEN=${DIGITALOCEAN_TOKEN:-}
unset DIGITALOCEAN_TOKEN VAULT_NAMESPACE

log() { echo "dev: $*" >&2; }
die() { log "error: $*"; exit 1; }

vault_pid=""
emulator_pid=""
work=""
cleaned=""

# children_of PID: the direct children of PID (the plugin processes of Vault).
children_of() {
  if command -v pgrep >/dev/null 2>&1; then
    pgrep -P "$1" 2>/dev/null || true
  elif [ -d /proc ]; then
    local d ppid
    for d in /proc/[0-9]*; do
      # /proc/PID/stat is "pid (comm) state ppid ..."; comm may contain spaces
      ppid=$(sed 's/^.*) [^ ]* \([0-9]*\).*/\1/' "$d/stat" 2>/dev/null) || continue
      [ "$ppid" = "$1" ] && echo "${d#/proc/}"
    done
  fi
}

# stop PID NAME: SIGTERM, up to 10 s to exit, then SIGKILL.
stop() {
  local pid=$1 name=$2 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  log "$name (pid $pid) did not stop in 10s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  [ -n "$cleaned" ] && return
  cleaned=1
  set +e
  trap '' INT TERM
  if [ -n "$vault_pid" ]; then
    local plugins
    plugins=$(children_of "$vault_pid")
    log "stopping Vault (pid $vault_pid)"
    stop "$vault_pid" vault
    # Vault stops its plugins on shutdown; make sure none outlives it.
    for p in $plugins; do stop "$p" "plugin"; done
  fi
  if [ -n "$emulator_pid" ]; then
    log "stopping the emulator (pid $emulator_pid)"
    stop "$emulator_pid" emulator
  fi
  if [ -n "$work" ]; then
    if [ "$status" -ne 0 ]; then
      for f in "$work"/*.log; do
        [ -s "$f" ] && { log "last lines of $f:"; tail -n 20 "$f" >&2; }
      done
    fi
    rm -rf "$work"
  fi
  log "stopped"
}
trap cleanup EXIT
# Ctrl-C and SIGTERM are the normal way to stop: clean up and exit 0.
trap 'exit 0' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# sample_key PREFIX: a random key of the shape the emulator accepts.
sample_key() {
  local s=""
  while [ ${#s} -lt 32 ]; do s+=$(printf '%04x' "$RANDOM"); done
  printf '%s%s' "$1" "${s:0:32}"
}

[ -x "$PLUGIN_DIR/$PLUGIN_NAME" ] || die "plugin not built at $PLUGIN_DIR/$PLUGIN_NAME (run: make dev)"
if [ -z "$REAL_TOKEN" ]; then
  [ -x "$EMULATOR_BIN" ] || die "emulator not built at $EMULATOR_BIN (run: make dev)"
  port_in_use "$EMULATOR_PORT" && die "port $EMULATOR_PORT is in use; choose another with EMULATOR_PORT=..."
fi
port_in_use "$VAULT_PORT" && die "port $VAULT_PORT is in use; choose another with VAULT_PORT=..."

vault_bin=$("$root/scripts/get-vault.sh") || die "could not get a Vault binary (see above)"
work=$(mktemp -d "${TMPDIR:-/tmp}/gradient-dev.XXXXXX")

export VAULT_ADDR="http://127.0.0.1:$VAULT_PORT"
export VAULT_TOKEN="$DEV_ROOT_TOKEN"
vault() { "$vault_bin" "$@"; }

emulator_url=""
if [ -z "$REAL_TOKEN" ]; then
  log "starting the Gradient emulator on 127.0.0.1:$EMULATOR_PORT"
  "$EMULATOR_BIN" -listen "127.0.0.1:$EMULATOR_PORT" -token "$EMULATOR_TOKEN" \
    -addr-file "$work/emulator.addr" >"$work/emulator.log" 2>&1 &
  emulator_pid=$!
  for _ in $(seq 1 100); do
    [ -s "$work/emulator.addr" ] && break
    kill -0 "$emulator_pid" 2>/dev/null || die "the emulator exited"
    sleep 0.1
  done
  [ -s "$work/emulator.addr" ] || die "the emulator did not start in 10s"
  emulator_url=$(cat "$work/emulator.addr")
fi

log "starting Vault ($("$vault_bin" version)) on $VAULT_ADDR"
"$vault_bin" server -dev -dev-no-store-token \
  -dev-root-token-id="$DEV_ROOT_TOKEN" \
  -dev-listen-address="127.0.0.1:$VAULT_PORT" \
  -dev-plugin-dir="$PLUGIN_DIR" >"$work/vault.log" 2>&1 &
vault_pid=$!
for _ in $(seq 1 300); do
  vault status >/dev/null 2>&1 && break
  kill -0 "$vault_pid" 2>/dev/null || die "Vault exited"
  sleep 0.1
done
vault status >/dev/null 2>&1 || die "Vault did not become ready in 30s"

sha=$(sha256_of "$PLUGIN_DIR/$PLUGIN_NAME")
log "registering $PLUGIN_NAME $VERSION (sha256 $sha)"
vault plugin register -sha256="$sha" -version="$VERSION" secret "$PLUGIN_NAME" >/dev/null ||
  die "could not register the plugin (see above)"
vault secrets enable -path="$MOUNT" -plugin-version="$VERSION" \
  -description="Gradient AI provider keys" "$PLUGIN_NAME" >/dev/null ||
  die "could not enable the plugin at $MOUNT/ (see above)"

if [ -z "$REAL_TOKEN" ]; then
  log "configuring $MOUNT/ against the emulator at $emulator_url"
  printf '%s' "$EMULATOR_TOKEN" | vault write "$MOUNT/config" token=- \
    api_url="$emulator_url" anthropic_url="$emulator_url/anthropic" openai_url="$emulator_url/openai" >/dev/null ||
    die "could not configure $MOUNT/ against the emulator (see above)"
  mkdir -p "$work/keys"
  sample_key sk-ant-api03- >"$work/keys/anthropic-1.key"
  sample_key sk-ant-api03- >"$work/keys/anthropic-2.key"
  sample_key sk-proj- >"$work/keys/openai-1.key"
else
  log "configuring $MOUNT/ against the real DigitalOcean API (keys verified with the real providers)"
  printf '%s' "$REAL_TOKEN" | vault write "$MOUNT/config" token=- >/dev/null ||
    die "could not configure $MOUNT/ with DIGITALOCEAN_TOKEN (see above)"
fi

# The session uses `vault`: when the binary is not the one on PATH, offer a
# PATH entry holding a `vault` link to it.
path_line=""
if [ "$(command -v vault 2>/dev/null || true)" != "$vault_bin" ]; then
  mkdir -p "$work/bin"
  ln -s "$vault_bin" "$work/bin/vault"
  path_line="  export PATH=\"$work/bin:\$PATH\""
fi

echo
echo "Vault $VAULT_ADDR is running with the plugin at $MOUNT/. In another terminal:"
echo
echo "  export VAULT_ADDR=$VAULT_ADDR"
echo "  export VAULT_TOKEN=$DEV_ROOT_TOKEN"
[ -n "$path_line" ] && echo "$path_line"
echo
if [ -z "$REAL_TOKEN" ]; then
  k="$work/keys"
  cat <<EOF
  # store a key (sample keys the emulator accepts are in $k/), read it, list
  vault write $MOUNT/keys/team-a-claude provider=anthropic api_key=@$k/anthropic-1.key description="dev key"
  vault read $MOUNT/keys/team-a-claude
  vault list $MOUNT/keys
  vault read $MOUNT/creds/team-a-claude

  # create an agent on the emulator that uses the key
  curl -sS -H 'Authorization: Bearer $EMULATOR_TOKEN' -H 'Content-Type: application/json' \\
    -d '{"name":"support-bot","instruction":"Answer questions.","model_uuid":"model-1","region":"tor1","project_id":"dev","anthropic_key_uuid":"'\$(vault read -field=uuid $MOUNT/keys/team-a-claude)'"}' \\
    $emulator_url/v2/gen-ai/agents
  vault read $MOUNT/keys/team-a-claude/agents

  # the key is in use, so delete is refused; move the agent to a second key, then delete
  vault delete $MOUNT/keys/team-a-claude
  vault write $MOUNT/keys/team-a-claude-2 provider=anthropic api_key=@$k/anthropic-2.key
  vault write $MOUNT/keys/team-a-claude/reassign to=team-a-claude-2
  vault delete $MOUNT/keys/team-a-claude

  # an OpenAI key, and what the platform holds now
  vault write $MOUNT/keys/team-a-gpt provider=openai api_key=@$k/openai-1.key
  curl -sS $emulator_url/_emulator/state

EOF
  echo "Logs: $work/vault.log, $work/emulator.log"
else
  cat <<EOF
  # store your Anthropic key (from a file, or api_key=- to read stdin), read it, list
  vault write $MOUNT/keys/team-a-claude provider=anthropic api_key=@\$HOME/anthropic.key description="dev key"
  vault read $MOUNT/keys/team-a-claude
  vault list $MOUNT/keys
  vault read $MOUNT/keys/team-a-claude/agents

  # after pointing an agent at the key in the control panel, move it to another key
  vault write $MOUNT/keys/team-a-claude-2 provider=anthropic api_key=@\$HOME/anthropic-2.key
  vault write $MOUNT/keys/team-a-claude/reassign to=team-a-claude-2
  vault delete $MOUNT/keys/team-a-claude

EOF
  echo "Logs: $work/vault.log"
fi
echo "Press Ctrl-C to stop Vault$([ -n "$emulator_pid" ] && echo " and the emulator")."

# Stay in the foreground; `sleep & wait` lets the traps run at once.
while kill -0 "$vault_pid" 2>/dev/null && { [ -z "$emulator_pid" ] || kill -0 "$emulator_pid" 2>/dev/null; }; do
  sleep 1 &
  wait $! || true
done
kill -0 "$vault_pid" 2>/dev/null || die "Vault exited unexpectedly"
die "the emulator exited unexpectedly"
