# Operators of the gradient/ mount: configuration, every key, renames, which
# need sudo, and status.
path "gradient/config" {
  capabilities = ["create", "read", "update", "delete"]
}

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
