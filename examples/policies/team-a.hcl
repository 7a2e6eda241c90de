# Team A manages its own provider keys (names starting with "team-a-") and
# reads their credentials. Everything else under gradient/ stays denied,
# including listing gradient/keys/, which would show every team's names.
#
# Vault uses only the most specific rule that matches a path, and the glob
# below also matches gradient/keys/team-a-<name>/reassign and /agents (a
# separate "gradient/keys/+/reassign" rule would lose to it, because its first
# wildcard comes earlier). So the parameter rules sit on this rule: every
# parameter is allowed ("*") except these three.
# - "to" must name one of the team's own keys: agents can only be moved
#   between team-a keys. (Vault matches a value such as "team-a-x,other"
#   against the glob as a whole and lets it pass; the plugin refuses any
#   "to" that is not one key name.)
# - "openai_project_id" must be one of the team's own OpenAI projects: the
#   plugin mints the team's service-account keys only there. proj_team_a is
#   a placeholder: replace it with the ids of team A's projects (proj_...,
#   in each project's settings at platform.openai.com), one string each.
# - "uuid" is denied: adopting a platform key that Vault does not manage yet
#   replaces its secret and hands its agents to whoever adopts it, and nothing
#   on the platform says which team it belongs to. Operators adopt
#   (gradient-admin.hcl).
path "gradient/keys/team-a-*" {
  capabilities = ["create", "read", "update", "delete"]
  allowed_parameters = {
    "*"                 = []
    "to"                = ["team-a-*"]
    "openai_project_id" = ["proj_team_a"]
  }
  denied_parameters = {
    "uuid" = []
  }
}

# Applications of the team read the current key here.
path "gradient/creds/team-a-*" {
  capabilities = ["read"]
}

# Renaming is sudo-protected: this grant alone is not enough, so the team
# asks an operator holding the gradient-admin policy to rename a key.
path "gradient/rename/team-a-*" {
  capabilities = ["update"]
}

# Applications of the team get their own agent API key per lease here
# (docs/agent-keys.md). Roles (agent-roles/) are written by operators:
# nothing here grants them, so a team cannot point a role at another team's
# agent or raise its max_leases.
path "gradient/agent-creds/team-a-*" {
  capabilities = ["read"]
}

# Services of the team read the secret of the team's static agent API keys
# here, and nothing else about them: static roles (agent-static-roles/) are
# written, rotated and deleted by operators (gradient-admin.hcl).
path "gradient/agent-static-creds/team-a-*" {
  capabilities = ["read"]
}
