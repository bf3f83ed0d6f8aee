package readmodel

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/ductworktype"
)

// Process is one supervisor process row.
type Process struct {
	ID             string                  `bun:"id" json:"id"`
	Host           string                  `bun:"host" json:"host"`
	PID            int64                   `bun:"pid" json:"pid"`
	DefinitionsRaw []byte                  `bun:"definitions" json:"-"`
	Definitions    []backend.DefinitionRef `bun:"-" json:"definitions"`
	StartedAt      Time                    `bun:"started_at" json:"started_at"`
	HeartbeatAt    Time                    `bun:"heartbeat_at" json:"heartbeat_at"`
	// HeartbeatAge is the age of the last heartbeat by the database's clock;
	// Live is true when it is under Config.LiveThreshold.
	HeartbeatAge time.Duration `bun:"-" json:"heartbeat_age"`
	Live         bool          `bun:"-" json:"live"`
}

// Processes lists the process rows, oldest first.
func (s *Store) Processes(ctx context.Context) ([]Process, error) {
	now, err := s.Now(ctx)
	if err != nil {
		return nil, err
	}
	t, args := s.table("ductwork_processes", "p")
	var ps []Process
	err = s.db.NewSelect().TableExpr(t, args...).
		ColumnExpr("p.id, p.host, p.pid, p.definitions, p.started_at, p.heartbeat_at").
		OrderExpr("p.started_at, p.id").Scan(ctx, &ps)
	if err != nil {
		return nil, fmt.Errorf("readmodel: processes: %w", err)
	}
	for i := range ps {
		p := &ps[i]
		p.Definitions = decodeRefs(p.DefinitionsRaw)
		p.HeartbeatAge = max(now.Sub(p.HeartbeatAt.Time), 0)
		p.Live = p.HeartbeatAge < s.cfg.LiveThreshold
	}
	return ps, nil
}

// decodeRefs reads a process's definitions as the backends store them: a
// JSON array of {"Pipeline", "Fingerprint"} objects or of [pipeline,
// fingerprint] pairs.
func decodeRefs(raw []byte) []backend.DefinitionRef {
	var pairs [][2]string
	if json.Unmarshal(raw, &pairs) == nil {
		refs := make([]backend.DefinitionRef, 0, len(pairs))
		for _, p := range pairs {
			refs = append(refs, backend.DefinitionRef{Pipeline: p[0], Fingerprint: p[1]})
		}
		return refs
	}
	var refs []backend.DefinitionRef
	if json.Unmarshal(raw, &refs) != nil {
		return nil
	}
	return refs
}

// Definition is one stored definition version, with its unfinished runs.
type Definition struct {
	Pipeline    string `json:"pipeline"`
	Fingerprint string `json:"fingerprint"`
	// Stored is false for a version that has unfinished runs but no stored
	// shape (started before shapes were stored).
	Stored    bool      `json:"stored"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	// Unfinished counts running and waiting runs; LiveProcesses the live
	// processes that registered this version.
	Unfinished    int64 `json:"unfinished"`
	LiveProcesses int   `json:"live_processes"`
	// Stranded: unfinished runs that no live process will claim.
	Stranded bool `json:"stranded"`
}

type storedDefinition struct {
	Pipeline    string `bun:"pipeline"`
	Fingerprint string `bun:"fingerprint"`
	CreatedAt   Time   `bun:"created_at"`
}

type unfinished struct {
	Pipeline    string `bun:"pipeline"`
	Fingerprint string `bun:"fingerprint"`
	Runs        int64  `bun:"runs"`
}

// Definitions lists the stored definition versions and every version with
// unfinished runs, by pipeline and fingerprint, each with whether its runs
// are stranded (no live process registered it).
func (s *Store) Definitions(ctx context.Context) ([]Definition, error) {
	t, args := s.table("ductwork_definitions", "d")
	var stored []storedDefinition
	if err := s.db.NewSelect().TableExpr(t, args...).ColumnExpr("d.pipeline, d.fingerprint, d.created_at").Scan(ctx, &stored); err != nil {
		return nil, fmt.Errorf("readmodel: definitions: %w", err)
	}
	rt, rargs := s.table("ductwork_runs", "r")
	var open []unfinished
	err := s.db.NewSelect().TableExpr(rt, rargs...).ColumnExpr("r.pipeline, r.fingerprint, COUNT(*) AS runs").
		Where("r.status IN (?, ?)", ductworktype.RunRunning, ductworktype.RunWaiting).
		GroupExpr("r.pipeline, r.fingerprint").Scan(ctx, &open)
	if err != nil {
		return nil, fmt.Errorf("readmodel: definitions: unfinished runs: %w", err)
	}
	procs, err := s.Processes(ctx)
	if err != nil {
		return nil, err
	}
	byRef := map[backend.DefinitionRef]*Definition{}
	get := func(ref backend.DefinitionRef) *Definition {
		d, ok := byRef[ref]
		if !ok {
			d = &Definition{Pipeline: ref.Pipeline, Fingerprint: ref.Fingerprint}
			byRef[ref] = d
		}
		return d
	}
	for _, sd := range stored {
		d := get(backend.DefinitionRef{Pipeline: sd.Pipeline, Fingerprint: sd.Fingerprint})
		d.Stored, d.CreatedAt = true, sd.CreatedAt.Time
	}
	for _, u := range open {
		get(backend.DefinitionRef{Pipeline: u.Pipeline, Fingerprint: u.Fingerprint}).Unfinished = u.Runs
	}
	for _, p := range procs {
		if !p.Live {
			continue
		}
		for _, ref := range p.Definitions {
			if d, ok := byRef[ref]; ok {
				d.LiveProcesses++
			}
		}
	}
	out := make([]Definition, 0, len(byRef))
	for _, d := range byRef {
		d.Stranded = d.Unfinished > 0 && d.LiveProcesses == 0
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Pipeline < b.Pipeline || a.Pipeline == b.Pipeline && a.CreatedAt.Before(b.CreatedAt)
	})
	return out, nil
}

// Shape returns the stored shape of a definition version, or ErrNotFound.
func (s *Store) Shape(ctx context.Context, ref backend.DefinitionRef) (*backend.Shape, error) {
	t, args := s.table("ductwork_definitions", "d")
	var raw []byte
	err := s.db.NewSelect().TableExpr(t, args...).ColumnExpr("d.shape").
		Where("d.pipeline = ? AND d.fingerprint = ?", ref.Pipeline, ref.Fingerprint).Scan(ctx, &raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("readmodel: definition %s@%s: %w", ref.Pipeline, ref.Fingerprint, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("readmodel: definition %s@%s: %w", ref.Pipeline, ref.Fingerprint, err)
	}
	var sh backend.Shape
	if err := json.Unmarshal(raw, &sh); err != nil {
		return nil, fmt.Errorf("readmodel: definition %s@%s: %w", ref.Pipeline, ref.Fingerprint, err)
	}
	return &sh, nil
}
