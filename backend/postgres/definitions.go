package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ductwork-go/ductwork/backend"
)

const (
	sqlDefinitionExists = `SELECT 1 FROM {schema}.ductwork_definitions WHERE pipeline = $1 AND fingerprint = $2`
	sqlSaveDefinition   = `INSERT INTO {schema}.ductwork_definitions (pipeline, fingerprint, shape)
VALUES ($1, $2, $3) ON CONFLICT (pipeline, fingerprint) DO NOTHING`
	sqlGetDefinition = `SELECT shape, created_at FROM {schema}.ductwork_definitions WHERE pipeline = $1 AND fingerprint = $2`
)

// SaveDefinitions stores each definition version not stored yet. A version
// already stored costs one primary-key read and no write; racing inserts
// keep the first shape (ON CONFLICT DO NOTHING).
func (b *Backend) SaveDefinitions(ctx context.Context, params *backend.SaveDefinitionsParams) (*backend.SaveDefinitionsResult, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	exists, insert := b.q.replacer.Replace(sqlDefinitionExists), b.q.replacer.Replace(sqlSaveDefinition)
	res := &backend.SaveDefinitionsResult{}
	for _, d := range params.Definitions {
		var one int
		switch err := b.pool.QueryRow(ctx, exists, d.Pipeline, d.Fingerprint).Scan(&one); {
		case err == nil:
			continue
		case !errors.Is(err, pgx.ErrNoRows):
			return nil, mapErr("save definitions", err)
		}
		tag, err := b.pool.Exec(ctx, insert, d.Pipeline, d.Fingerprint, string(d.Shape))
		if err != nil {
			return nil, mapErr("save definitions", err)
		}
		res.Inserted += int(tag.RowsAffected())
	}
	return res, nil
}

// GetDefinition reads one stored definition version, or returns
// backend.ErrDefinitionNotFound.
func (b *Backend) GetDefinition(ctx context.Context, params *backend.GetDefinitionParams) (*backend.StoredDefinition, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	d := &backend.StoredDefinition{DefinitionRef: params.Ref}
	var shape string
	err := b.pool.QueryRow(ctx, b.q.replacer.Replace(sqlGetDefinition), params.Ref.Pipeline, params.Ref.Fingerprint).Scan(&shape, &d.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("ductwork/postgres: get definition %s@%s: %w", params.Ref.Pipeline, params.Ref.Fingerprint, backend.ErrDefinitionNotFound)
	}
	if err != nil {
		return nil, mapErr("get definition", err)
	}
	d.Shape = []byte(shape)
	return d, nil
}
