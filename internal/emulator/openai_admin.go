package emulator

import (
	"fmt"
	"net/http"
	"time"
)

// DefaultOpenAIProjectID is the project every emulator starts with (and
// returns to on Reset), so minting works without setup.
const DefaultOpenAIProjectID = "proj_default"

const (
	msgOpenAINoKey = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from https://platform.openai.com/account/api-keys."
	// msgOpenAINotAdmin is what a working model key gets on an Admin API
	// endpoint (the 403 and its text are assumed; see doc.go).
	msgOpenAINotAdmin = "You have insufficient permissions for this operation. The Admin API requires an admin key (sk-admin-...)."

	openAIDefaultLimit = 20
	openAIMaxLimit     = 100
)

// openAIProject is an OpenAI project; service accounts live in one.
type openAIProject struct {
	id, name  string
	createdAt time.Time
	// archivedAt is zero while the project is active. An archived project
	// still answers its GET, with status "archived", but refuses to create
	// or list service accounts.
	archivedAt time.Time
}

func (p *openAIProject) archived() bool { return !p.archivedAt.IsZero() }

// serviceAccount is a project's service account with the one key OpenAI
// mints with it. Deleting the account retires the key.
type serviceAccount struct {
	id, projectID, name string
	keyID, secret       string
	createdAt           time.Time
	deletedAt           time.Time // zero while the account exists
}

func (a *serviceAccount) deleted() bool { return !a.deletedAt.IsZero() }

type openAIProjectObject struct {
	Object     string `json:"object"`
	ID         string `json:"id"`
	Name       string `json:"name"`
	CreatedAt  int64  `json:"created_at"`
	ArchivedAt *int64 `json:"archived_at"`
	Status     string `json:"status"`
}

func (p *openAIProject) object() openAIProjectObject {
	o := openAIProjectObject{Object: "organization.project", ID: p.id, Name: p.name, CreatedAt: p.createdAt.Unix(), Status: "active"}
	if p.archived() {
		at := p.archivedAt.Unix()
		o.ArchivedAt, o.Status = &at, "archived"
	}
	return o
}

type serviceAccountKeyObject struct {
	Object    string `json:"object"`
	Value     string `json:"value"`
	Name      string `json:"name"`
	CreatedAt int64  `json:"created_at"`
	ID        string `json:"id"`
}

// serviceAccountObject is a service account; APIKey is set only in the
// answer to create, the one time OpenAI shows the key.
type serviceAccountObject struct {
	Object    string                   `json:"object"`
	ID        string                   `json:"id"`
	Name      string                   `json:"name"`
	Role      string                   `json:"role"`
	CreatedAt int64                    `json:"created_at"`
	APIKey    *serviceAccountKeyObject `json:"api_key,omitempty"`
}

func (a *serviceAccount) object() serviceAccountObject {
	return serviceAccountObject{Object: "organization.project.service_account", ID: a.id, Name: a.name, Role: "member", CreatedAt: a.createdAt.Unix()}
}

// openAIList is OpenAI's cursor-paged list.
type openAIList struct {
	Object  string  `json:"object"`
	Data    any     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

func openAIFail(status int, message string, param, code *string) failure {
	return func(w http.ResponseWriter) {
		writeOpenAIError(w, status, openAIErrorDetail{Message: message, Type: "invalid_request_error", Param: param, Code: code})
	}
}

// openAIInvalidKey is OpenAI's 401 for a key it does not know. Like the
// real API, the message echoes a masked fragment of the key: the plugin has
// to keep provider text out of logs and responses.
func openAIInvalidKey(key string) failure {
	return openAIFail(http.StatusUnauthorized,
		"Incorrect API key provided: "+maskKey(key)+". You can find your API key at https://platform.openai.com/account/api-keys.",
		nil, ptr("invalid_api_key"))
}

// openAIAdmin wraps an Admin API handler, which runs under the lock, in the
// admin-key check: no key or an unknown one is 401, a working model key 403.
func (e *Emulator) openAIAdmin(h func(r *http.Request, id string) (any, failure)) handler {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		key, given := bearerToken(r)
		e.answerProviderLocked(w, func() (any, failure) {
			switch {
			case !given:
				return nil, openAIFail(http.StatusUnauthorized, msgOpenAINoKey, nil, nil)
			case e.adminKeyWorksLocked(ProviderOpenAI, key):
				return h(r, id)
			case e.keyUsableLocked(openAI, key):
				return nil, openAIFail(http.StatusForbidden, msgOpenAINotAdmin, nil, nil)
			default:
				return nil, openAIInvalidKey(key)
			}
		})
	}
}

func (e *Emulator) findProjectLocked(id string) *openAIProject {
	for _, p := range e.org.projects {
		if p.id == id {
			return p
		}
	}
	return nil
}

// findAccountLocked returns the live service account id of project, or nil.
func (e *Emulator) findAccountLocked(projectID, id string) *serviceAccount {
	for _, a := range e.org.serviceAccounts {
		if a.id == id && a.projectID == projectID && !a.deleted() {
			return a
		}
	}
	return nil
}

// msgProjectArchived is OpenAI's refusal of service-account calls in an
// archived project (the 400 is documented; the exact text is assumed).
const msgProjectArchived = "project is archived"

// activeProjectLocked is the project id, or the failure a service-account
// create or list meets: 404 for no such project, 400 for an archived one.
func (e *Emulator) activeProjectLocked(id string) failure {
	p := e.findProjectLocked(id)
	switch {
	case p == nil:
		return projectNotFound(id)
	case p.archived():
		return openAIFail(http.StatusBadRequest, msgProjectArchived, nil, nil)
	}
	return nil
}

func projectNotFound(id string) failure {
	return openAIFail(http.StatusNotFound, fmt.Sprintf("No project found with id '%s'.", id), nil, nil)
}

func accountNotFound(id string) failure {
	return openAIFail(http.StatusNotFound, fmt.Sprintf("No service account found with id '%s' in this project.", id), nil, nil)
}

// openAIPage reads limit and after, and pages the items of all that keep accepts.
func openAIPage[T any](r *http.Request, all []T, id func(T) string, keep func(T) bool) ([]T, bool, failure) {
	limit, msg := parseLimit(r, openAIDefaultLimit, openAIMaxLimit)
	if msg != "" {
		return nil, false, openAIFail(http.StatusBadRequest, msg, ptr("limit"), nil)
	}
	after := r.URL.Query().Get("after")
	page, more, ok := cursorPage(all, id, keep, after, "", limit)
	if !ok {
		return nil, false, openAIFail(http.StatusBadRequest, fmt.Sprintf("No object found with id '%s' to page after.", after), ptr("after"), nil)
	}
	return page, more, nil
}

func projectID(p *openAIProject) string  { return p.id }
func accountID(a *serviceAccount) string { return a.id }

// listProjectsLocked answers GET /v1/organization/projects, the cheap read
// that proves an admin key works.
func (e *Emulator) listProjectsLocked(r *http.Request, _ string) (any, failure) {
	page, more, fail := openAIPage(r, e.org.projects, projectID, func(*openAIProject) bool { return true })
	if fail != nil {
		return nil, fail
	}
	data := []openAIProjectObject{}
	for _, p := range page {
		data = append(data, p.object())
	}
	first, last := firstLast(page, projectID)
	return openAIList{Object: "list", Data: data, FirstID: first, LastID: last, HasMore: more}, nil
}

func (e *Emulator) getProjectLocked(_ *http.Request, id string) (any, failure) {
	p := e.findProjectLocked(id)
	if p == nil {
		return nil, projectNotFound(id)
	}
	return p.object(), nil
}

// listServiceAccountsLocked lists a project's live service accounts, without keys.
func (e *Emulator) listServiceAccountsLocked(r *http.Request, projectID string) (any, failure) {
	if fail := e.activeProjectLocked(projectID); fail != nil {
		return nil, fail
	}
	live := func(a *serviceAccount) bool { return a.projectID == projectID && !a.deleted() }
	page, more, fail := openAIPage(r, e.org.serviceAccounts, accountID, live)
	if fail != nil {
		return nil, fail
	}
	data := []serviceAccountObject{}
	for _, a := range page {
		data = append(data, a.object())
	}
	first, last := firstLast(page, accountID)
	return openAIList{Object: "list", Data: data, FirstID: first, LastID: last, HasMore: more}, nil
}

// createServiceAccountLocked mints a service account and its key, and shows
// the key's value this once.
func (e *Emulator) createServiceAccountLocked(r *http.Request, projectID string) (any, failure) {
	if fail := e.activeProjectLocked(projectID); fail != nil {
		return nil, fail
	}
	var body struct {
		Name string `json:"name"`
	}
	if err := decodeBody(r, &body); err != nil {
		return nil, openAIFail(http.StatusBadRequest, "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload.", nil, nil)
	}
	if body.Name == "" {
		return nil, openAIFail(http.StatusBadRequest, "Missing required parameter: 'name'.", ptr("name"), ptr("missing_required_parameter"))
	}
	now := providerNow()
	a := &serviceAccount{
		id: randomID("svc_acct_", 24), projectID: projectID, name: body.Name,
		keyID: randomID("key_", 24), secret: randomID("sk-svcacct-", 64), createdAt: now,
	}
	e.org.serviceAccounts = append(e.org.serviceAccounts, a)
	e.org.accountBySecret[a.secret] = a
	obj := a.object()
	obj.APIKey = &serviceAccountKeyObject{
		Object: "organization.project.service_account.api_key",
		Value:  a.secret, Name: "Secret Key", CreatedAt: now.Unix(), ID: a.keyID,
	}
	return obj, nil
}

func (e *Emulator) getServiceAccountLocked(r *http.Request, id string) (any, failure) {
	projectID := r.PathValue("project_id")
	if e.findProjectLocked(projectID) == nil {
		return nil, projectNotFound(projectID)
	}
	a := e.findAccountLocked(projectID, id)
	if a == nil {
		return nil, accountNotFound(id)
	}
	return a.object(), nil
}

// deleteServiceAccountLocked deletes the account, and with it its key: the
// key fails every check from now on. A second delete is 404.
func (e *Emulator) deleteServiceAccountLocked(r *http.Request, id string) (any, failure) {
	projectID := r.PathValue("project_id")
	if e.findProjectLocked(projectID) == nil {
		return nil, projectNotFound(projectID)
	}
	a := e.findAccountLocked(projectID, id)
	if a == nil {
		return nil, accountNotFound(id)
	}
	a.deletedAt = providerNow()
	return struct {
		Object  string `json:"object"`
		ID      string `json:"id"`
		Deleted bool   `json:"deleted"`
	}{"organization.project.service_account.deleted", a.id, true}, nil
}

// AddOpenAIProject adds a project to the OpenAI organization and returns its
// id: id itself, or a new proj_... id when id is empty. It panics when id
// does not start with "proj_" or is taken. Reset leaves only
// DefaultOpenAIProjectID.
func (e *Emulator) AddOpenAIProject(id, name string) string {
	id, err := e.addOpenAIProject(id, name)
	if err != nil {
		panic("emulator: AddOpenAIProject: " + err.Error())
	}
	return id
}

func (e *Emulator) addOpenAIProject(id, name string) (string, error) {
	if id == "" {
		id = randomID("proj_", 24)
	}
	if len(id) <= len("proj_") || id[:len("proj_")] != "proj_" {
		return "", fmt.Errorf("project id %q does not start with \"proj_\"", id)
	}
	if name == "" {
		name = id
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.findProjectLocked(id) != nil {
		return "", fmt.Errorf("project %q already exists", id)
	}
	e.org.projects = append(e.org.projects, &openAIProject{id: id, name: name, createdAt: providerNow()})
	return id, nil
}

// ArchiveOpenAIProject archives the project id, as a person does in OpenAI's
// dashboard: its GET answers status "archived", and creating or listing its
// service accounts answers 400. Its accounts stay, their keys keep working
// and can be deleted (assumed; OpenAI documents neither). It panics on an
// unknown project; archiving twice changes nothing.
func (e *Emulator) ArchiveOpenAIProject(id string) {
	if err := e.archiveOpenAIProject(id); err != nil {
		panic("emulator: ArchiveOpenAIProject: " + err.Error())
	}
}

func (e *Emulator) archiveOpenAIProject(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.findProjectLocked(id)
	if p == nil {
		return fmt.Errorf("no project %q", id)
	}
	if !p.archived() {
		p.archivedAt = providerNow()
	}
	return nil
}
