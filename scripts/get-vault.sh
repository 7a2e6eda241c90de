#!/usr/bin/env bash
# Prints the path of a Vault binary usable for development and tests.
#
# Uses a `vault` on PATH when it is version 1.15 or later. Otherwise builds
# Vault v1.21.0 from the Go module proxy into $VAULT_CACHE_DIR once and reuses
# it. Vault (BUSL-1.1) is only a test and development tool here: its source is
# copied into a scratch directory, never into this project.
#
# The binary is built under a temporary name and moved into place only after
# it has run `vault version`, so an interrupted build is never trusted later.
# Everything but the final path goes to stderr.
set -euo pipefail

VAULT_VERSION="${VAULT_VERSION:-1.21.0}"
VAULT_CACHE_DIR="${VAULT_CACHE_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.cache/vault}"
MIN_MAJOR=1
MIN_MINOR=15

log() { echo "get-vault: $*" >&2; }
die() { log "error: $*"; exit 1; }

# version_ok "Vault v1.21.0 (...)" -> 0 when >= 1.15
version_ok() {
  local v
  v=$(sed -n 's/^Vault v\([0-9]*\.[0-9]*\).*/\1/p' <<<"$1")
  [ -n "$v" ] || return 1
  local major=${v%%.*} minor=${v#*.}
  [ "$major" -gt "$MIN_MAJOR" ] || { [ "$major" -eq "$MIN_MAJOR" ] && [ "$minor" -ge "$MIN_MINOR" ]; }
}

if [ -z "${VAULT_FORCE_BUILD:-}" ] && command -v vault >/dev/null 2>&1; then
  path_vault=$(command -v vault)
  if out=$("$path_vault" version 2>/dev/null) && version_ok "$out"; then
    log "using $path_vault ($out)"
    echo "$path_vault"
    exit 0
  fi
  log "ignoring $path_vault: version ${out:-unknown} is older than $MIN_MAJOR.$MIN_MINOR"
fi

target="$VAULT_CACHE_DIR/vault-$VAULT_VERSION"
if [ -x "$target" ] && out=$("$target" version 2>/dev/null) && version_ok "$out"; then
  log "using cached $target ($out)"
  echo "$target"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "Go is needed to build Vault; install Go 1.25 or later"
mkdir -p "$VAULT_CACHE_DIR"
work=$(mktemp -d "$VAULT_CACHE_DIR/build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

log "building Vault v$VAULT_VERSION from the Go module proxy (5-10 minutes the first time)"
modcache=$(go env GOMODCACHE)
GOFLAGS=-mod=mod go mod download -x "github.com/hashicorp/vault@v$VAULT_VERSION" >/dev/null 2>"$work/download.log" \
  || { tail -20 "$work/download.log" >&2; die "could not download github.com/hashicorp/vault@v$VAULT_VERSION"; }
src="$modcache/github.com/hashicorp/vault@v$VAULT_VERSION"
[ -d "$src" ] || die "module source not found at $src"

cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
# The release's go.mod points api/ and sdk/ at its own subdirectories, which
# the module zip does not contain; drop those lines so the published modules
# are used instead.
sed -i -E '/^replace github.com\/hashicorp\/vault\/(api|sdk)[^=]*=> \.\/(api|sdk)/d' "$work/src/go.mod"
(
  cd "$work/src"
  GOFLAGS=-mod=mod go build -trimpath -o "$work/vault" . 
) >&2 || die "go build of Vault failed (see above)"

out=$("$work/vault" version) || die "the built binary does not run"
version_ok "$out" || die "the built binary reports '$out'"
mv -f "$work/vault" "$target"
log "built $target ($out)"
echo "$target"
