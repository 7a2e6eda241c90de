# Operators of the gradient/ mount: configuration, every key, and renames,
# which need sudo.
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
