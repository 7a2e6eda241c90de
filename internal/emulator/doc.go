// Package emulator is an in-memory stand-in for the parts of DigitalOcean's
// Gradient AI platform (partner provider keys and agents) and of the
// Anthropic and OpenAI key-check endpoints that the Vault plugin talks to.
// The real services cannot be reached from tests, so one http.Handler serves
// all three by path prefix:
//
//	/v2/gen-ai/...        the platform (base URL = server URL)
//	/anthropic/v1/models  Anthropic's cheap key check (anthropic_url = <server>/anthropic)
//	/openai/v1/models     OpenAI's cheap key check (openai_url = <server>/openai)
//	/_emulator/...        test control: state, revocation, faults, latency, limits
//
// # Faithful to the public API
//
// Paths, methods, request and response bodies follow DigitalOcean's OpenAPI
// specification and godo v1.239.0, so the real godo client works against it:
// {"api_key_info": ...} for create, get, update and delete (HTTP 200, delete
// adds deleted_at); {"api_key_infos": [...], "links", "meta"} for lists;
// {"agent": ...} and {"agents": [...]} for agents; error bodies
// {"id","message","request_id"} with the request id repeated in x-request-id;
// page/per_page pagination (default 20, at most 200) whose links are absolute
// URLs and are left out when everything fits on one page; per-token limits of
// 250 requests a minute and 5,000 an hour reported in ratelimit-limit,
// ratelimit-remaining and ratelimit-reset, with 429 too_many_requests and
// retry-after past them. The secret of a provider key is never returned by a
// platform endpoint. The provider endpoints answer like the real ones,
// including OpenAI's habit of echoing a masked fragment of a rejected key.
//
// # Assumptions (unconfirmed upstream; the plugin must not rely on them)
//
//   - Validation failures, including a key the platform fails to verify on
//     create or update, are 400 with id "invalid_argument".
//   - The platform verifies a key against the emulated provider in-process:
//     a key passes when it has the provider's model-key format and has not
//     been revoked.
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
//     rejected (429) ones do not.
//   - On the platform, faults act after authentication and rate limiting: a
//     request refused with 401 or 429 neither triggers nor uses up a fault.
//     A "status" fault on a provider path answers in that provider's error
//     shape (e.g. Anthropic's overloaded_error for 529), not the platform's.
//   - Timestamps are RFC 3339 in UTC with sub-second precision, so updated_at
//     visibly moves even when two updates land within one second. (The real
//     platform's have one-second resolution; clients must allow for both.)
//   - The platform's clock can run apart from the client's (SetClockSkew, or
//     POST clock {"skew"}): timestamps and every platform answer's Date
//     header follow it.
//   - A "late" fault holds a request for its delay whether or not the client
//     still waits, then applies it: a change that lands after a timeout.
//
// Reset clears all state and test settings (keys, agents, revocations, faults,
// clock skew, latency, counts, rate windows and rate limits set at run time) but keeps the
// Config and any token added with AddToken.
package emulator
