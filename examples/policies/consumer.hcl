# An application that uses team A's keys: it reads their current secret and
# nothing else (no key metadata, no listing, no changes).
path "gradient/creds/team-a-*" {
  capabilities = ["read"]
}

# ... and the secret of team A's static agent API keys, for the agents it
# calls.
path "gradient/agent-static-creds/team-a-*" {
  capabilities = ["read"]
}
