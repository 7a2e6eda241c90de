# Operators of the gradient/ mount: configuration, every key, renames, which
# need sudo, and status.
path "gradient/config" {
  capabilities = ["create", "read", "update", "delete"]
}

# Every parameter, including uuid: adopting a platform key that Vault does
# not manage yet is an operator's step (the team policies deny it).
path "gradient/keys/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "gradient/creds/*" {
  capabilities = ["read"]
}

path "gradient/rename/*" {
  capabilities = ["update", "sudo"]
}

# Agent roles: which agent a dynamic agent API key is made for, its ttl,
# max_ttl and max_leases (docs/agent-keys.md). Operators write them, and
# tidy this mount's agent keys that no lease holds.
path "gradient/agent-roles/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "gradient/agent-creds/*" {
  capabilities = ["read"]
}

path "gradient/agent-creds-tidy" {
  capabilities = ["update"]
}

# The operations view: key counts, overdue and failed rotations.
path "gradient/status" {
  capabilities = ["read"]
}

# Static agent API keys: operators write the roles (which agent; adopting an
# existing key with api_key_uuid), rotate them now (agent-static-roles/<name>/rotate)
# and delete them; they can read every role's secret.
path "gradient/agent-static-roles/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "gradient/agent-static-creds/*" {
  capabilities = ["read"]
}
