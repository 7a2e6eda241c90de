# An application that uses team A's keys: it reads their current secret and
# nothing else (no key metadata, no listing, no changes).
path "gradient/creds/team-a-*" {
  capabilities = ["read"]
}
