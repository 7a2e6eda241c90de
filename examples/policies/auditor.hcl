# Auditors of the gradient/ mount: which keys exist, their metadata (provider,
# uuid, version, key hints, rotation state and errors), the mount's status and
# configuration. Nothing that uses or changes a key: no creds/, no writes.
# None of these reads returns a secret: keys/<name> shows the last four
# characters of a key, config never shows the token.
path "gradient/keys/*" {
  capabilities = ["read", "list"]
}

path "gradient/config" {
  capabilities = ["read"]
}

path "gradient/status" {
  capabilities = ["read"]
}

# Static agent API key roles: the agent, the key's uuid, the rotation state.
# Never the secret, which only agent-static-creds/ returns.
path "gradient/agent-static-roles/*" {
  capabilities = ["read", "list"]
}
