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

# The operations view: key counts, overdue and failed rotations.
path "gradient/status" {
  capabilities = ["read"]
}
