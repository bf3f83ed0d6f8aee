package mysql

import (
	"context"
	"database/sql"
	"sync"
)

// Statements with arguments are prepared once per connection and reused.
// database/sql would otherwise prepare, execute and close each one (unless
// the DSN sets interpolateParams): two round trips per statement instead of
// one, which over a slow link more than doubled the time of a completion
// (measured with 200 ms of latency each way: about 15 round trips for a
// completion that claims the next step, 8 with prepared statements).

// maxPrepared bounds the statements kept prepared; the texts that vary (a
// placeholder group repeated n times) are few in practice, and any beyond the
// bound are run unprepared.
const maxPrepared = 256

type preparedSet struct {
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// stmt returns the prepared statement for query, preparing it (on any
// connection; database/sql prepares it again on each connection it runs on,
// once) the first time, or nil when the set is full.
func (b *Backend) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	b.prepared.mu.Lock()
	s, ok := b.prepared.stmts[query]
	full := len(b.prepared.stmts) >= maxPrepared
	b.prepared.mu.Unlock()
	if ok {
		return s, nil
	}
	if full {
		return nil, nil
	}
	// Prepared without the lock held: a round trip must not hold up the
	// callers of other statements.
	s, err := b.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	b.prepared.mu.Lock()
	defer b.prepared.mu.Unlock()
	if other, ok := b.prepared.stmts[query]; ok {
		_ = s.Close() // prepared twice at once: keep the first
		return other, nil
	}
	if b.prepared.stmts == nil {
		b.prepared.stmts = map[string]*sql.Stmt{}
	}
	b.prepared.stmts[query] = s
	return s, nil
}

// closePrepared closes the prepared statements.
func (b *Backend) closePrepared() {
	b.prepared.mu.Lock()
	defer b.prepared.mu.Unlock()
	for q, s := range b.prepared.stmts {
		_ = s.Close()
		delete(b.prepared.stmts, q)
	}
}

// ptx runs the statements of one transaction through prepared statements.
type ptx struct {
	b  *Backend
	tx *sql.Tx
}

// prepared wraps tx.
func (b *Backend) preparedTx(tx *sql.Tx) ptx { return ptx{b: b, tx: tx} }

func (p ptx) txStmt(ctx context.Context, query string, args []any) (*sql.Stmt, error) {
	if len(args) == 0 {
		return nil, nil
	}
	s, err := p.b.stmt(ctx, query)
	if err != nil || s == nil {
		return nil, err
	}
	return p.tx.StmtContext(ctx, s), nil
}

// ExecContext is tx.ExecContext through a prepared statement.
func (p ptx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	s, err := p.txStmt(ctx, query, args)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return p.tx.ExecContext(ctx, query, args...)
	}
	return s.ExecContext(ctx, args...)
}

// QueryContext is tx.QueryContext through a prepared statement.
func (p ptx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	s, err := p.txStmt(ctx, query, args)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return p.tx.QueryContext(ctx, query, args...)
	}
	return s.QueryContext(ctx, args...)
}

// QueryRowContext is tx.QueryRowContext through a prepared statement.
func (p ptx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	s, err := p.txStmt(ctx, query, args)
	if err != nil || s == nil {
		// A failed preparation is reported by running the query unprepared.
		return p.tx.QueryRowContext(ctx, query, args...)
	}
	return s.QueryRowContext(ctx, args...)
}

// exec is b.db.ExecContext through a prepared statement (outside a
// transaction: database/sql picks the connection).
func (b *Backend) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if len(args) > 0 {
		s, err := b.stmt(ctx, query)
		if err != nil {
			return nil, err
		}
		if s != nil {
			return s.ExecContext(ctx, args...)
		}
	}
	return b.db.ExecContext(ctx, query, args...)
}

// query is b.db.QueryContext through a prepared statement.
func (b *Backend) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if len(args) > 0 {
		s, err := b.stmt(ctx, query)
		if err != nil {
			return nil, err
		}
		if s != nil {
			return s.QueryContext(ctx, args...)
		}
	}
	return b.db.QueryContext(ctx, query, args...)
}
