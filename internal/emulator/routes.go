package emulator

import (
	"net/http"
	"strings"
)

// handler serves one route; id is the value of the route's last wildcard
// segment. Every wildcard is also set as a path value, so a route with two
// reads the other with r.PathValue (e.g. r.PathValue("project_id")).
type handler func(w http.ResponseWriter, r *http.Request, id string)

// route is one method and path pattern. A pattern segment in braces, such as
// "{uuid}" or "{project_id}", matches any single non-empty segment.
type route struct {
	method  string
	pattern string
	segs    []string
	handle  handler
}

// key is the route's name in Counts, e.g. "GET /v2/gen-ai/anthropic/keys/{uuid}".
func (rt *route) key() string { return rt.method + " " + rt.pattern }

type router struct{ routes []*route }

func (rt *router) add(method, pattern string, h handler) {
	rt.routes = append(rt.routes, &route{
		method:  method,
		pattern: pattern,
		segs:    strings.Split(strings.TrimPrefix(pattern, "/"), "/"),
		handle:  h,
	})
}

// routeMatch is the outcome of a lookup: a route, or the methods the path
// would accept (405), or neither (404).
type routeMatch struct {
	route  *route
	id     string
	params []pathParam
	allow  []string
}

// pathParam is the value a wildcard segment took in one request.
type pathParam struct{ name, value string }

func (rt *router) match(method, path string) routeMatch {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	var m routeMatch
	for _, r := range rt.routes {
		params, ok := matchSegments(r.segs, segs)
		if !ok {
			continue
		}
		if r.method == method {
			found := routeMatch{route: r, params: params}
			if len(params) > 0 {
				found.id = params[len(params)-1].value
			}
			return found
		}
		m.allow = append(m.allow, r.method)
	}
	return m
}

func matchSegments(pattern, segs []string) ([]pathParam, bool) {
	if len(pattern) != len(segs) {
		return nil, false
	}
	var params []pathParam
	for i, p := range pattern {
		switch {
		case isWildcard(p) && segs[i] != "":
			params = append(params, pathParam{p[1 : len(p)-1], segs[i]})
		case p != segs[i]:
			return nil, false
		}
	}
	return params, true
}

func isWildcard(seg string) bool {
	return len(seg) > 2 && strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}")
}

// buildRoutes lists every emulated endpoint. The patterns double as the keys
// of Counts, so they spell the provider out instead of using a wildcard.
func (e *Emulator) buildRoutes() *router {
	rt := &router{}
	for _, p := range providers {
		base := "/v2/gen-ai/" + p.name + "/keys"
		rt.add(http.MethodGet, base, e.listKeys(p))
		rt.add(http.MethodPost, base, e.createKey(p))
		rt.add(http.MethodGet, base+"/{uuid}", e.getKey(p))
		rt.add(http.MethodPut, base+"/{uuid}", e.updateKey(p))
		rt.add(http.MethodDelete, base+"/{uuid}", e.deleteKey(p))
		rt.add(http.MethodGet, base+"/{uuid}/agents", e.listAgentsByKey(p))
	}
	rt.add(http.MethodGet, agentsPath, e.listAgents)
	rt.add(http.MethodPost, agentsPath, e.createAgent)
	rt.add(http.MethodGet, agentsPath+"/{uuid}", e.getAgent)
	rt.add(http.MethodPut, agentsPath+"/{uuid}", e.updateAgent)
	rt.add(http.MethodDelete, agentsPath+"/{uuid}", e.deleteAgent)
	agentKeys := agentsPath + "/{agent_uuid}/api_keys"
	rt.add(http.MethodGet, agentKeys, e.listAgentAPIKeys)
	rt.add(http.MethodPost, agentKeys, e.createAgentAPIKey)
	rt.add(http.MethodPut, agentKeys+"/{api_key_uuid}", e.renameAgentAPIKey)
	rt.add(http.MethodDelete, agentKeys+"/{api_key_uuid}", e.deleteAgentAPIKey)
	rt.add(http.MethodPut, agentKeys+"/{api_key_uuid}/regenerate", e.regenerateAgentAPIKey)
	rt.add(http.MethodPost, agentEndpointPrefix+"/{endpoint_host}/api/v1/chat/completions", e.agentChatCompletion)

	rt.add(http.MethodGet, anthropicPrefix+"/v1/models", e.anthropicModels)
	rt.add(http.MethodGet, openAIPrefix+"/v1/models", e.openAIModels)
	e.addProviderAdminRoutes(rt)
	return rt
}
