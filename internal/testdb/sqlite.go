package testdb

import (
	"path/filepath"
	"testing"
)

// SQLitePath returns the path of a not-yet-existing SQLite database file in a
// directory of its own under t.TempDir(), removed when the test ends.
func SQLitePath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "ductwork.db")
}
