package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ductwork-go/ductwork/backend"
)

const (
	qDefinitionExists = `SELECT 1 FROM ductwork_definitions WHERE pipeline = ? AND fingerprint = ?`
	qSaveDefinition   = `INSERT INTO ductwork_definitions (pipeline, fingerprint, shape, created_at)
VALUES (?, ?, ?, ` + nowUS + `) ON CONFLICT (pipeline, fingerprint) DO NOTHING`
	qGetDefinition = `SELECT shape, created_at FROM ductwork_definitions WHERE pipeline = ? AND fingerprint = ?`
)

// SaveDefinitions stores each definition version not stored yet. Versions
// found on the read pool cost no write; the insert of the others keeps the
// first shape stored when writers race.
func (b *Backend) SaveDefinitions(ctx context.Context, params *backend.SaveDefinitionsParams) (*backend.SaveDefinitionsResult, error) {
	if b.closed.Load() {
		return nil, errClosed("save definitions")
	}
	res := &backend.SaveDefinitionsResult{}
	for _, d := range params.Definitions {
		row, err := b.readRow(ctx, qDefinitionExists, d.Pipeline, d.Fingerprint)
		if err != nil {
			return nil, mapErr("save definitions", err)
		}
		var one int
		switch err := row.Scan(&one); {
		case err == nil:
			continue
		case !errors.Is(err, sql.ErrNoRows):
			return nil, mapErr("save definitions", err)
		}
		r, err := b.writeExec(ctx, qSaveDefinition, d.Pipeline, d.Fingerprint, string(d.Shape))
		if err != nil {
			return nil, mapErr("save definitions", err)
		}
		n, err := r.RowsAffected()
		if err != nil {
			return nil, mapErr("save definitions", err)
		}
		res.Inserted += int(n)
	}
	return res, nil
}

// GetDefinition reads one stored definition version from the read pool.
func (b *Backend) GetDefinition(ctx context.Context, params *backend.GetDefinitionParams) (*backend.StoredDefinition, error) {
	if b.closed.Load() {
		return nil, errClosed("get definition")
	}
	row, err := b.readRow(ctx, qGetDefinition, params.Ref.Pipeline, params.Ref.Fingerprint)
	if err != nil {
		return nil, mapErr("get definition", err)
	}
	d := &backend.StoredDefinition{DefinitionRef: params.Ref}
	var shape string
	var us int64
	if err := row.Scan(&shape, &us); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			err = fmt.Errorf("%s@%s: %w", params.Ref.Pipeline, params.Ref.Fingerprint, backend.ErrDefinitionNotFound)
		}
		return nil, mapErr("get definition", err)
	}
	d.Shape, d.CreatedAt = []byte(shape), fromMicros(us)
	return d, nil
}
