package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ductwork-go/ductwork/backend"
)

const (
	qDefinitionExists = `SELECT 1 FROM ductwork_definitions WHERE pipeline = ? AND fingerprint = ?`
	// INSERT IGNORE would also swallow data errors; a no-op update on the
	// duplicate key keeps the first shape and reports 0 rows affected.
	qSaveDefinition = `INSERT INTO ductwork_definitions (pipeline, fingerprint, shape, created_at)
VALUES (?, ?, ?, ` + nowUS + `) ON DUPLICATE KEY UPDATE pipeline = pipeline`
	qGetDefinition = `SELECT shape, created_at FROM ductwork_definitions WHERE pipeline = ? AND fingerprint = ?`
)

// SaveDefinitions stores each definition version not stored yet. A version
// already stored costs one primary-key read and no write.
func (b *Backend) SaveDefinitions(ctx context.Context, params *backend.SaveDefinitionsParams) (*backend.SaveDefinitionsResult, error) {
	const op = "save definitions"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	res := &backend.SaveDefinitionsResult{}
	for _, d := range params.Definitions {
		var one int
		switch err := b.db.QueryRowContext(ctx, qDefinitionExists, d.Pipeline, d.Fingerprint).Scan(&one); {
		case err == nil:
			continue
		case !errors.Is(err, sql.ErrNoRows):
			return nil, mapErr(op, err)
		}
		r, err := b.db.ExecContext(ctx, qSaveDefinition, d.Pipeline, d.Fingerprint, d.Shape)
		if err != nil {
			return nil, mapErr(op, err)
		}
		n, err := r.RowsAffected()
		if err != nil {
			return nil, mapErr(op, err)
		}
		res.Inserted += int(n)
	}
	return res, nil
}

// GetDefinition reads one stored definition version, or returns
// backend.ErrDefinitionNotFound.
func (b *Backend) GetDefinition(ctx context.Context, params *backend.GetDefinitionParams) (*backend.StoredDefinition, error) {
	const op = "get definition"
	if err := b.checkOpen(op); err != nil {
		return nil, err
	}
	d := &backend.StoredDefinition{DefinitionRef: params.Ref}
	var us int64
	err := b.db.QueryRowContext(ctx, qGetDefinition, params.Ref.Pipeline, params.Ref.Fingerprint).Scan(&d.Shape, &us)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			err = fmt.Errorf("%s@%s: %w", params.Ref.Pipeline, params.Ref.Fingerprint, backend.ErrDefinitionNotFound)
		}
		return nil, mapErr(op, err)
	}
	d.CreatedAt = fromMicros(us)
	return d, nil
}
