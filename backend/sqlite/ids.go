package sqlite

import (
	"errors"
	"strings"
	"sync"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// IDs are never reused. AUTOINCREMENT (migration 3) keeps the highest run and
// job ID ever committed in sqlite_sequence, so deleted rows give theirs back
// to nobody. But sqlite_sequence is written in the inserting transaction: when
// the caller's transaction of a TriggerTx rolls back, the IDs it was handed go
// back too, and the next run would get the same ID as the handle the caller
// may still hold.
//
// So the Backend remembers the highest IDs it handed out in a caller's
// transaction: Trigger inserts past them, and the next transaction of the
// Backend's own raises sqlite_sequence to them, so that every connection to
// the file skips them from then on. Another process's Trigger in the moment
// between the caller's rollback and this Backend's next write (a claim, a
// completion, a heartbeat's claim loop: milliseconds under a supervisor) can
// still be given such an ID.
type idFloor struct {
	mu sync.Mutex
	// run, job: the highest IDs handed out in a caller's transaction.
	run, job int64
	// dirty: run or job may be above sqlite_sequence.
	dirty bool
}

// floors returns the smallest IDs Trigger may use.
func (f *idFloor) floors() (run, job int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.run + 1, f.job + 1
}

// handedOut records IDs inserted in a caller's transaction.
func (f *idFloor) handedOut(run, job int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.run, f.job = max(f.run, run), max(f.job, job)
	f.dirty = true
}

// pending returns the floors to write to sqlite_sequence, if any.
func (f *idFloor) pending() (run, job int64, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.run, f.job, f.dirty
}

// persisted marks run and job as written to sqlite_sequence by a committed
// transaction.
func (f *idFloor) persisted(run, job int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.run == run && f.job == job {
		f.dirty = false
	}
}

// raiseSequences writes pending floors to sqlite_sequence in t.
func (b *Backend) raiseSequences(t *txn) (run, job int64, ok bool, err error) {
	run, job, ok = b.ids.pending()
	if !ok {
		return 0, 0, false, nil
	}
	if _, err := t.exec(qRaiseSequence, run, "ductwork_runs"); err != nil {
		return 0, 0, false, err
	}
	if _, err := t.exec(qRaiseSequence, job, "ductwork_jobs"); err != nil {
		return 0, 0, false, err
	}
	return run, job, true, nil
}

// isNoSuchTable reports whether err says one of the backend's tables (or
// sqlite_sequence, which the first AUTOINCREMENT table creates) or one of
// their columns is missing: Migrate has not run, or not since an upgrade.
// The statements are constants, so a missing column is an old schema, not a
// typo. SQLite has no error code for these; the messages are stable.
func isNoSuchTable(err error) bool {
	var se sqlite3.Error
	if !errors.As(err, &se) || se.Code != sqlite3.ErrError {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "no such table: ductwork_") || strings.Contains(msg, "no such table: sqlite_sequence") ||
		strings.Contains(msg, "no such column: ") || (strings.Contains(msg, "table ductwork_") && strings.Contains(msg, " has no column named "))
}
