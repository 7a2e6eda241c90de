# Team B manages its own provider keys (names starting with "team-b-") and
# reads their credentials. Everything else under gradient/ stays denied,
# including listing gradient/keys/, which would show every team's names.
#
# Vault uses only the most specific rule that matches a path, and the glob
# below also matches gradient/keys/team-b-<name>/reassign and /agents (a
# separate "gradient/keys/+/reassign" rule would lose to it, because its first
# wildcard comes earlier). So the restriction on reassign's "to" sits on this
# rule: every parameter is allowed ("*") except "to", which must name one of
# the team's own keys. Agents can therefore only be moved between team-b keys.
# (Vault matches a value such as "team-b-x,other" against the glob as a
# whole and lets it pass; the plugin refuses any "to" that is not one key name.)
# Adopting a platform key with uuid= is allowed; the plugin refuses a uuid
# that another name of the mount already manages. To leave adoption to
# operators, add: denied_parameters = { "uuid" = [] }
path "gradient/keys/team-b-*" {
  capabilities = ["create", "read", "update", "delete"]
  allowed_parameters = {
    "*"  = []
    "to" = ["team-b-*"]
  }
}

# Applications of the team read the current key here.
path "gradient/creds/team-b-*" {
  capabilities = ["read"]
}

# Renaming is sudo-protected: this grant alone is not enough, so the team
# asks an operator holding the gradient-admin policy to rename a key.
path "gradient/rename/team-b-*" {
  capabilities = ["update"]
}
