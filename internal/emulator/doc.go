// Package emulator is an in-memory stand-in for the parts of DigitalOcean's
// Gradient AI platform (partner provider keys and agents) and of the
// Anthropic and OpenAI key-check and Admin API endpoints that the Vault
// plugin talks to. The real services cannot be reached from tests, so one
// http.Handler serves them all by path prefix:
//
//	/v2/gen-ai/...        the platform (base URL = server URL)
//	/anthropic/v1/models  Anthropic's cheap key check (anthropic_url = <server>/anthropic)
//	/anthropic/v1/organizations/api_keys[/{api_key_id}]
//	                      Anthropic's Admin API: list, get, update (name, status)
//	/openai/v1/models     OpenAI's cheap key check (openai_url = <server>/openai)
//	/openai/v1/organization/projects[/{project_id}[/service_accounts[/{service_account_id}]]]
//	                      OpenAI's Admin API: projects (list, get), service
//	                      accounts (list, create, get, delete); an archived
//	                      project (ArchiveOpenAIProject) answers status
//	                      "archived", and 400 to creating or listing its
//	                      service accounts
//	/agent-endpoints/{host}/api/v1/chat/completions
//	                      the endpoint of the agent deployed at
//	                      https://{host}.agents.do-ai.run (AgentEndpointURL):
//	                      200 for a live agent API key, 401 otherwise
//	/_emulator/...        test control: state, revocation, faults, latency, limits,
//	                      admin keys, provider state, request log, OpenAI
//	                      projects (add, archive), list links on single pages
//	                      (GET requests: method, path, status, User-Agent of
//	                      each request; GET secret-changes: secret changes by
//	                      key uuid; GET agent-api-keys: agent API keys,
//	                      without secrets)
//
// # Faithful to the public API
//
// Paths, methods, request and response bodies follow DigitalOcean's OpenAPI
// specification and godo v1.239.0, so the real godo client works against it:
// {"api_key_info": ...} for create, get, update and delete (HTTP 200, delete
// adds deleted_at); {"api_key_infos": [...], "links", "meta"} for lists;
// {"agent": ...} and {"agents": [...]} for agents, each with its deployment
// {url, status, visibility}; the agent API keys of
// /v2/gen-ai/agents/{agent_uuid}/api_keys, whose secret_key is in the answers
// to create and regenerate only; error bodies
// {"id","message","request_id"} with the request id, a uuid, repeated in
// x-request-id; page/per_page pagination (default 20, at most 200) whose
// links.pages are absolute URLs named as the reference's schema names them
// (first on every page, single pages included; previous, not godo's "prev";
// next and last), with meta {total, page, pages}; per-token limits of 250
// requests a minute and 5,000 an hour reported in ratelimit-limit,
// ratelimit-remaining and ratelimit-reset (when the oldest request of the
// hour expires) on every answer, 401s included, with 429 too_many_requests
// "API Rate limit exceeded." past them: remaining 0 on every 429, and
// retry-after on burst 429s only. The secret of a provider key is never
// returned by a platform endpoint. The provider endpoints answer like the real ones,
// including OpenAI's habit of echoing a masked fragment of a rejected key.
//
// # The providers' Admin APIs
//
// An Admin API accepts only the admin keys registered with AddAdminKey (or
// POST /_emulator/admin-keys): sk-admin-... for OpenAI, sk-ant-admin... for
// Anthropic. Admin keys outlive Reset, like platform tokens; Revoke refuses
// one until the next Reset.
//
// How a model key comes to exist at each provider:
//
//   - Anthropic: a key exists once it has passed a key check, Anthropic's own
//     (GET /anthropic/v1/models) or the platform's on create or update, or
//     once a test adds it with AddAnthropicKey (POST /_emulator/anthropic-keys),
//     as a person would in the console; software cannot create one. From
//     then on the Admin API lists it, active, with partial_key_hint: the
//     "sk-ant-api03-" prefix and the next three characters, "...", the last
//     four. Two keys can share a hint (AddAnthropicKey makes that easy to
//     test). A key whose status is inactive or archived fails every key check.
//   - OpenAI: any well-formed model key that nobody revoked passes the key
//     check, as before. POST .../service_accounts mints an account and a
//     fresh sk-svcacct- key (its value shown in that answer only); deleting
//     the account retires the key, which then fails every key check.
//
// ProviderState (GET /_emulator/provider-state) shows projects, service
// accounts (deleted ones too, marked, with the key each minted) and
// Anthropic keys (id, hint, status, secret), so tests can count leaks. It is
// kept apart from State so that provider-side changes never look like
// platform changes. Reset leaves only the default OpenAI project
// (DefaultOpenAIProjectID) and no accounts or Anthropic keys.
//
// # Assumptions (unconfirmed upstream; the plugin must not rely on them)
//
//   - Validation failures, including a key the platform fails to verify on
//     create or update, are 400 with id "invalid_argument".
//   - The platform verifies a key against the emulated provider in-process:
//     a key passes when it has the provider's model-key format, has not
//     been revoked, and has not been retired through the provider's Admin
//     API (see above).
//   - Key names need not be unique; the plugin must prevent duplicates itself.
//   - Deleting a key that agents still use is allowed; those agents lose the key.
//   - Agents embed their key as "anthropic_api_key" and "openai_api_key" (the
//     OpenAPI spelling; godo's struct says "open_ai_api_key").
//   - An agent PUT keeps every field it leaves out or sends empty, so it cannot
//     clear an agent's key.
//   - Re-sending an unchanged name or secret in a key PUT is not a change and
//     leaves updated_at alone.
//   - Every request to a known route is counted on arrival, whatever its
//     outcome; only authenticated platform requests use rate-limit budget, and
//     rejected (429) ones do not. A 401 reports the budget of the token it
//     presented (a whole one, reset now, when that token made no request in
//     the hour).
//   - Single pages carry links with first (godo's test data); the
//     reference's prose says links may be absent there, which
//     OmitSinglePageLinks (POST list-links {"omit_single_page": true})
//     makes the emulator do: clients must accept both.
//   - A "short" fault drops the last item of a listing's page and keeps its
//     meta and links: a listing that ends short of meta.total.
//   - On the platform, faults act after authentication and rate limiting: a
//     request refused with 401 or 429 neither triggers nor uses up a fault.
//     A "status" fault on a provider path answers in that provider's error
//     shape (e.g. Anthropic's overloaded_error for 529), not the platform's.
//     A 429 fault with retry_after is the platform's burst refusal
//     (ratelimit-remaining 0 and retry-after); it still counts in the hour,
//     since the fault acts after admission. A 429 fault without it keeps
//     the request's own rate-limit headers: a transient refusal the
//     reference does not describe, for retry tests. Every 429 body is
//     too_many_requests "API Rate limit exceeded.".
//   - Timestamps are RFC 3339 in UTC with sub-second precision, so updated_at
//     visibly moves even when two updates land within one second. (The real
//     platform's have one-second resolution; clients must allow for both.)
//   - The platform's clock can run apart from the client's (SetClockSkew, or
//     POST clock {"skew"}): timestamps and every platform answer's Date
//     header follow it.
//   - A "late" fault holds a request for its delay whether or not the client
//     still waits, then applies it: a change that lands after a timeout.
//   - On the provider hosts, faults act before the key check (the providers
//     have no rate limit here), and Admin API requests use no platform budget.
//   - A key that is not an admin key, on an Admin API endpoint: a working
//     model key is 403 (OpenAI: invalid_request_error with code null;
//     Anthropic: permission_error), anything else 401 (OpenAI: code
//     invalid_api_key with a masked fragment of the key; Anthropic:
//     authentication_error "invalid x-api-key"). Both providers document 401
//     and 403, not this split, nor the 403 messages.
//   - OpenAI: an archived project's 400 says "project is archived"
//     (invalid_request_error, code null); its accounts made before stay,
//     their keys keep working and can be deleted (OpenAI documents neither).
//   - OpenAI: an unknown project or service account (a deleted one, or one
//     of another project) is 404 invalid_request_error with code null, so a
//     second delete is 404. A missing name on create is 400 with param
//     "name". Names need not be unique; role is always "member";
//     create_service_account_only and expires_in_seconds are not emulated.
//     Minted keys are sk-svcacct- and 64 letters and digits (real ones are
//     longer). Lists are in creation order, limit 1-100 (default 20), paged
//     by after.
//   - Anthropic: the key list is newest first. An archived key is archived
//     for good (any update of it is 400); inactive and active switch freely.
//     The status filter accepts "expired", which matches nothing; the
//     workspace_id and created_by_user_id filters are ignored. Every key is
//     in the default workspace (workspace_id null), expires_at null, created
//     by one user.
//   - Both: a paging cursor that names no object is 400. A cursor whose
//     object is filtered out (deleted, other status) still pages on.
//   - Revoke makes a key fail the key check but leaves its Admin API entry
//     (an Anthropic key stays "active" in the list).
//   - The providers' timestamps follow this machine's clock, not the
//     platform's skew.
//   - Agent API keys: an empty name on create is 400 invalid_argument, an
//     empty name on rename changes nothing; names need not be unique; a
//     regenerate reads no body. Secrets are 32 letters and digits (the
//     reference says only "alphanumeric"). Every agent is deployed, running
//     and private; its endpoint answers 401 with the platform's error body
//     (the endpoint's own error shape is not documented) and takes no
//     platform token.
//
// Reset clears all state and test settings (keys, agents, revocations, faults,
// clock skew, latency, counts, rate windows and rate limits set at run time,
// and the providers' Admin API state) but keeps the Config, any token added
// with AddToken and any admin key added with AddAdminKey.
package emulator
