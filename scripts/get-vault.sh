#!/usr/bin/env bash
# Prints the path of a Vault binary usable for development and tests.
#
# In order, the first that works:
#   1. a `vault` on PATH at version 1.15 or later;
#   2. the binary cached in $VAULT_CACHE_DIR by an earlier run;
#   3. HashiCorp's official release zip of Vault v$VAULT_VERSION for this OS and
#      architecture (seconds), checked against the release's SHA256SUMS, whose
#      signature is checked with gpg when gpg is installed;
#   4. a build of Vault v$VAULT_VERSION from the Go module proxy (about 11
#      minutes the first time on two cores). Vault (BUSL-1.1) is only a test and
#      development tool here: its source is copied into a scratch directory,
#      never into this project.
# Steps 3 and 4 cache their result in $VAULT_CACHE_DIR.
#
# A download or build happens in a scratch directory and its binary is moved
# into place only after it has run `vault version`, so an interrupted run is
# never trusted later. A zip whose checksum does not match, or checksums whose
# signature does not verify, are refused and never cached. Everything but the
# final path goes to stderr.
#
# Environment:
#   VAULT_VERSION        Vault version to get (default 1.21.0)
#   VAULT_CACHE_DIR      where the binary is cached (default .cache/vault)
#   VAULT_RELEASES_URL   release server (default https://releases.hashicorp.com)
#   VAULT_FORCE_BUILD=1  build from source: ignore a vault on PATH, skip the download
#   VAULT_NO_BUILD=1     never build from source: fail when the download fails
#   VAULT_RELEASE_KEY, VAULT_RELEASE_KEY_FINGERPRINT
#                        the armored public key that signs SHA256SUMS and its
#                        primary key's fingerprint (default: HashiCorp's release
#                        key in scripts/hashicorp-release.asc); for tests and for
#                        mirrors that sign their own checksums
set -euo pipefail

VAULT_VERSION="${VAULT_VERSION:-1.21.0}"
script_dir=$(cd "$(dirname "$0")" && pwd)
VAULT_CACHE_DIR="${VAULT_CACHE_DIR:-$(dirname "$script_dir")/.cache/vault}"
VAULT_RELEASES_URL="${VAULT_RELEASES_URL:-https://releases.hashicorp.com}"
# HashiCorp's release signing key, as published on https://www.hashicorp.com/security
# (the copy in scripts/ is the one HashiCorp vendors in hashicorp/hc-install's
# internal/pubkey/pubkey.go). Its primary key must have this fingerprint.
RELEASE_KEY="${VAULT_RELEASE_KEY:-$script_dir/hashicorp-release.asc}"
RELEASE_KEY_FINGERPRINT="${VAULT_RELEASE_KEY_FINGERPRINT:-C874011F0AB405110D02105534365D9472D7468F}"
MIN_MAJOR=1
MIN_MINOR=15

log() { echo "get-vault: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Scratch directories, removed on exit whatever happens.
scratch=()
cleanup() {
  local d
  for d in "${scratch[@]+"${scratch[@]}"}"; do
    chmod -R u+w "$d" 2>/dev/null
    rm -rf "$d"
  done
}
trap cleanup EXIT
new_scratch() { # <prefix>: prints a new directory inside the cache
  mkdir -p "$VAULT_CACHE_DIR"
  mktemp -d "$VAULT_CACHE_DIR/$1.XXXXXX"
}

# version_ok "Vault v1.21.0 (...)" -> 0 when >= 1.15
version_ok() {
  local v
  v=$(sed -n 's/^Vault v\([0-9]*\.[0-9]*\).*/\1/p' <<<"$1")
  [ -n "$v" ] || return 1
  local major=${v%%.*} minor=${v#*.}
  [ "$major" -gt "$MIN_MAJOR" ] || { [ "$major" -eq "$MIN_MAJOR" ] && [ "$minor" -ge "$MIN_MINOR" ]; }
}

# ---------------------------------------------------------------------------
# The download path. Every helper returns non-zero after putting the reason in
# $why; nothing here exits, so a failure falls through to the source build.
why=""

release_platform() { # sets $platform to <os>_<arch> in HashiCorp's naming
  local os arch
  case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    FreeBSD) os=freebsd ;;
    OpenBSD) os=openbsd ;;
    NetBSD) os=netbsd ;;
    SunOS) os=solaris ;;
    *) why="no release for OS $(uname -s)"; return 1 ;;
  esac
  case "$(uname -m)" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    i?86) arch=386 ;;
    armv*) arch=arm ;;
    *) why="no release for architecture $(uname -m)"; return 1 ;;
  esac
  platform="${os}_${arch}"
}

# fetch <url> <file>: curl, never following a redirect to plain http. Only the
# zip is retried: retrying the first request would slow an offline machine's
# fallback to the build, as curl retries a failed DNS look-up too.
fetch() {
  local opts=(--fail --location --proto-redir "=https" --connect-timeout 15
    --speed-limit 1024 --speed-time 60 --output "$2")
  if [[ "$1" == *.zip ]]; then
    opts+=(--retry 2)
  fi
  if [ -t 2 ] && [[ "$1" == *.zip ]]; then
    curl "${opts[@]}" --progress-bar "$1" || { why="could not fetch $1 (curl exit $?)"; return 1; }
  else
    local err
    err=$(curl "${opts[@]}" --silent --show-error "$1" 2>&1) \
      || { why="could not fetch $1: $(tail -1 <<<"$err")"; return 1; }
  fi
}

sha256_of() { # <file>
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# verify_signature <sig> <file>: a keyring made from $RELEASE_KEY alone, in a
# private gpg home, so the user's keys, options and agent never take part.
verify_signature() {
  local gnupg="$work/gnupg" primary status
  mkdir -m 700 "$gnupg" || { why="cannot write to $work"; return 1; }
  [ -r "$RELEASE_KEY" ] || { why="the release key $RELEASE_KEY is missing"; return 1; }
  primary=$(gpg --homedir "$gnupg" --batch --with-colons --show-keys "$RELEASE_KEY" 2>/dev/null \
    | awk -F: '$1 == "pub" { n++; want = 1; next } $1 == "fpr" && want { print $10; want = 0 } END { if (n != 1) print "not-one-key" }')
  [ "$primary" = "$RELEASE_KEY_FINGERPRINT" ] \
    || { why="$RELEASE_KEY is not the key with fingerprint $RELEASE_KEY_FINGERPRINT (found: ${primary:-none})"; return 1; }
  gpg --homedir "$gnupg" --batch --quiet --dearmor --output "$gnupg/release.gpg" "$RELEASE_KEY" 2>/dev/null \
    || { why="could not read $RELEASE_KEY"; return 1; }
  # VALIDSIG's last field is the primary key of the (sub)key that signed; a
  # signature by a revoked key is refused even though it is valid.
  status=$(gpg --homedir "$gnupg" --batch --no-autostart --no-default-keyring --keyring "$gnupg/release.gpg" \
    --trust-model always --status-fd 1 --verify "$1" "$2" 2>/dev/null) || true
  awk -v want="$RELEASE_KEY_FINGERPRINT" '$1 != "[GNUPG:]" { next }
      $2 == "VALIDSIG" && $NF == want { ok = 1 }
      $2 == "BADSIG" || $2 == "ERRSIG" || $2 == "REVKEYSIG" { bad = 1 }
      END { exit !(ok && !bad) }' <<<"$status" \
    || { why="the signature of $(basename "$2") does not verify with key $RELEASE_KEY_FINGERPRINT"; return 1; }
}

unzip_vault() { # <zip> <dir>: extracts the vault binary with unzip, else python3
  if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "$1" vault -d "$2" >/dev/null 2>&1 || { why="unzip could not extract vault from $(basename "$1")"; return 1; }
  elif command -v python3 >/dev/null 2>&1; then
    python3 -m zipfile -e "$1" "$2" >/dev/null 2>&1 || { why="python3 could not extract $(basename "$1")"; return 1; }
  else
    why="neither unzip nor python3 is installed to extract the zip"
    return 1
  fi
  [ -f "$2/vault" ] || { why="$(basename "$1") has no vault binary"; return 1; }
  chmod 755 "$2/vault"
}

# download_release: verified release binary into $target, or non-zero with $why.
download_release() {
  local platform base sums zip want got out
  command -v curl >/dev/null 2>&1 || { why="curl is not installed"; return 1; }
  command -v sha256sum >/dev/null 2>&1 || command -v shasum >/dev/null 2>&1 \
    || { why="neither sha256sum nor shasum is installed"; return 1; }
  release_platform || return 1
  base="${VAULT_RELEASES_URL%/}/vault/$VAULT_VERSION"
  sums="vault_${VAULT_VERSION}_SHA256SUMS"
  zip="vault_${VAULT_VERSION}_${platform}.zip"
  work=$(new_scratch download) || { why="cannot write to $VAULT_CACHE_DIR"; return 1; }
  scratch+=("$work")

  fetch "$base/$sums" "$work/$sums" || return 1
  if command -v gpg >/dev/null 2>&1; then
    fetch "$base/$sums.sig" "$work/$sums.sig" || return 1
    verify_signature "$work/$sums.sig" "$work/$sums" || return 1
    log "$sums: signature by $RELEASE_KEY_FINGERPRINT verified"
  else
    log "gpg is not installed: the signature of $sums is not checked, only the zip's checksum"
  fi
  want=$(awk -v f="$zip" '$2 == f { print $1 }' "$work/$sums")
  [[ "$want" =~ ^[0-9a-f]{64}$ ]] || { why="$sums lists no single checksum for $zip"; return 1; }

  log "downloading $base/$zip"
  fetch "$base/$zip" "$work/$zip" || return 1
  got=$(sha256_of "$work/$zip")
  [ "$got" = "$want" ] || { why="refused $zip: its SHA256 is $got, $sums says $want"; return 1; }

  mkdir "$work/out" || { why="cannot write to $work"; return 1; }
  unzip_vault "$work/$zip" "$work/out" || return 1
  out=$("$work/out/vault" version 2>/dev/null) || { why="the downloaded binary does not run on this machine"; return 1; }
  [[ "$out" == "Vault v$VAULT_VERSION"* ]] || { why="the downloaded binary reports '$out', not v$VAULT_VERSION"; return 1; }
  mv -f "$work/out/vault" "$target" || { why="could not move the binary to $target"; return 1; }
  log "downloaded $target ($out)"
}

# ---------------------------------------------------------------------------

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

if [ -z "${VAULT_FORCE_BUILD:-}" ]; then
  if download_release; then
    echo "$target"
    exit 0
  fi
  log "download failed ($why); building from source instead"
fi

[ -z "${VAULT_NO_BUILD:-}" ] || die "VAULT_NO_BUILD is set: not building Vault v$VAULT_VERSION from source"
command -v go >/dev/null 2>&1 || die "Go is needed to build Vault; install Go 1.25 or later"
work=$(new_scratch build)
scratch+=("$work")

log "building Vault v$VAULT_VERSION from the Go module proxy (about 11 minutes the first time)"
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
