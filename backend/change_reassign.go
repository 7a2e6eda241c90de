package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// reassignWAL: the agents were being moved from key From to key To.
type reassignWAL struct {
	walHeader
	From     string   `json:"from"`
	To       string   `json:"to"`
	FromName string   `json:"from_name"`
	ToName   string   `json:"to_name"`
	Agents   []string `json:"agents"`
}

func (w *reassignWAL) kind() string                  { return walKindReassign }
func (w *reassignWAL) lockScope() ([]string, string) { return []string{w.FromName, w.ToName}, "" }
func (w *reassignWAL) undone() string                { return w.said("the agents already moved were moved back") }
func (w *reassignWAL) describe() []any {
	return []any{"provider", w.Provider, "from", w.From, "to", w.To, "agents", strings.Join(w.Agents, ",")}
}

// reassignAgents switches every agent from one key to the other. Agents
// whose fields other than the key changed are returned as warnings.
func (b *gradientBackend) reassignAgents(ctx context.Context, s logical.Storage, c *clients, from, to *keyEntry, agents []platform.Agent) ([]string, error) {
	w := &reassignWAL{
		walHeader: walHeader{Provider: from.Provider, Created: b.now().UTC()},
		From:      from.UUID, To: to.UUID, FromName: from.Name, ToName: to.Name,
	}
	for _, a := range agents {
		w.Agents = append(w.Agents, a.UUID)
	}
	var warnings []string
	err := b.makeChange(ctx, s, pendingChange{
		entry: w,
		// A record of the completed move, so that the rollback of an
		// earlier failed move never undoes this one.
		commit: func(ctx context.Context) error { return putReassignDone(ctx, s, from.UUID, b.now().UTC()) },
		apply: func(ctx context.Context) error {
			for i, agent := range agents {
				after, err := c.platform.SetAgentKey(ctx, from.Provider, agent.UUID, to.UUID)
				if err != nil {
					err = fmt.Errorf("moving agent %s (%s) failed after %d of %d were moved: %w", agent.Name, agent.UUID, i, len(agents), err)
					if len(agents) > 1 {
						// With several agents, a refusal of one does
						// not say that none moved.
						err = platform.PossiblyApplied(err)
					}
					return err
				}
				if changed := agentDrift(agent, after); changed != "" {
					// Only the key was sent; if the platform changed
					// anything else, someone must look at that agent.
					b.Logger().Error("agent fields changed by a key switch", "agent", agent.UUID, "fields", changed)
					warnings = append(warnings, fmt.Sprintf("agent %s (%s): the platform changed %s while switching its key; check the agent", agent.Name, agent.UUID, changed))
				}
			}
			return nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w. %s", err, b.whereAgentsAre(ctx, c, from, to, agents))
	}
	return warnings, nil
}

// undo moves back to From every agent of the move that now uses To. If the
// From key is gone, the agents have nowhere to go back to and the move
// stands.
func (w *reassignWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	// Storage knows no agents, but it records when a move away from this
	// key last completed: a move that completed after this entry was
	// written stands.
	if done, err := getReassignDone(ctx, s, w.From); err != nil {
		return err
	} else if done.After(w.Created) {
		w.outcome = "a later reassign from this key completed, so the agents stay where it put them"
		return nil
	}
	c, err := b.clients(ctx, s)
	if err != nil {
		return fmt.Errorf("rolling back the reassign from %s: %w", w.From, err)
	}
	onTarget, err := c.platform.ListAgentsByKey(ctx, w.Provider, w.To)
	if errors.Is(err, platform.ErrNotFound) {
		return nil // the target is gone, and the agents with it
	}
	if err != nil {
		return fmt.Errorf("rolling back the reassign from %s: %w", w.From, err)
	}
	var failed []string
	for _, a := range onTarget {
		if !slices.Contains(w.Agents, a.UUID) {
			continue
		}
		_, err := c.platform.SetAgentKey(ctx, w.Provider, a.UUID, w.From)
		if errors.Is(err, platform.ErrNotFound) {
			b.Logger().Warn("the source key of a failed reassign is gone; the agents stay on the target", "from", w.From, "to", w.To)
			w.outcome = "the key the agents came from is gone, so they stay on the new key"
			return nil
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", a.UUID, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("moving agents back to %s failed: %s", w.From, strings.Join(failed, "; "))
	}
	return nil
}

// reassignDonePrefix records, per source key uuid, when a reassign away from
// it last completed.
const reassignDonePrefix = "reassigns/"

func putReassignDone(ctx context.Context, s logical.Storage, fromUUID string, at time.Time) error {
	entry, err := logical.StorageEntryJSON(reassignDonePrefix+strings.ToLower(fromUUID), map[string]time.Time{"completed": at})
	if err == nil {
		err = s.Put(ctx, entry)
	}
	if err != nil {
		return fmt.Errorf("recording the completed reassign: %w", err)
	}
	return nil
}

func getReassignDone(ctx context.Context, s logical.Storage, fromUUID string) (time.Time, error) {
	entry, err := s.Get(ctx, reassignDonePrefix+strings.ToLower(fromUUID))
	if err != nil || entry == nil {
		return time.Time{}, err
	}
	var rec map[string]time.Time
	if err := entry.DecodeJSON(&rec); err != nil {
		return time.Time{}, fmt.Errorf("decoding the reassign record: %w", err)
	}
	return rec["completed"], nil
}

// whereAgentsAre asks the platform where each agent of a failed move is now,
// so the caller learns the state rather than a guess.
func (b *gradientBackend) whereAgentsAre(ctx context.Context, c *clients, from, to *keyEntry, agents []platform.Agent) string {
	// A key that is gone has no agents.
	onFrom, errFrom := c.platform.ListAgentsByKey(ctx, from.Provider, from.UUID)
	if errors.Is(errFrom, platform.ErrNotFound) {
		errFrom = nil
	}
	onTo, errTo := c.platform.ListAgentsByKey(ctx, to.Provider, to.UUID)
	if errors.Is(errTo, platform.ErrNotFound) {
		errTo = nil
	}
	if errFrom != nil || errTo != nil {
		return "Where the agents are now could not be read back from the platform: list them with keys/<name>/agents"
	}
	var back, moved, elsewhere []string
	for _, a := range agents {
		label := fmt.Sprintf("%s (%s)", a.Name, a.UUID)
		switch {
		case containsAgent(onFrom, a.UUID):
			back = append(back, label)
		case containsAgent(onTo, a.UUID):
			moved = append(moved, label)
		default:
			elsewhere = append(elsewhere, label)
		}
	}
	parts := []string{"Now:"}
	add := func(what string, list []string) {
		if len(list) > 0 {
			parts = append(parts, fmt.Sprintf("%s: %s;", what, strings.Join(list, ", ")))
		}
	}
	add(fmt.Sprintf("on %q", from.Name), back)
	add(fmt.Sprintf("on %q", to.Name), moved)
	add("on neither key", elsewhere)
	return strings.TrimSuffix(strings.Join(parts, " "), ";")
}

func containsAgent(agents []platform.Agent, uuid string) bool {
	return slices.ContainsFunc(agents, func(a platform.Agent) bool { return a.UUID == uuid })
}
