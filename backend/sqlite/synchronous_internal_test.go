package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
)

// TestSynchronous: Config.Synchronous sets PRAGMA synchronous on both handles
// Open creates (NORMAL = 1 by default, FULL = 2), and other values are
// refused with a *ConfigError.
func TestSynchronous(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		value string
		want  int
	}{{"", 1}, {"NORMAL", 1}, {"full", 2}, {"FULL", 2}} {
		b, err := Open(filepath.Join(t.TempDir(), "sync.db"), &Config{Synchronous: tc.value})
		if err != nil {
			t.Fatal(err)
		}
		for name, db := range map[string]*sql.DB{"writer": b.write, "reader": b.read} {
			var got int
			if err := db.QueryRowContext(t.Context(), "PRAGMA synchronous").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Synchronous %q: %s handle has synchronous = %d, want %d", tc.value, name, got, tc.want)
			}
		}
		if err := b.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"OFF", "EXTRA", "2", "fast"} {
		var ce *ConfigError
		b, err := Open(filepath.Join(t.TempDir(), "bad.db"), &Config{Synchronous: bad})
		if !errors.As(err, &ce) || ce.Field != "Synchronous" {
			if b != nil {
				_ = b.Close(context.Background())
			}
			t.Errorf("Synchronous %q: err = %v, want a *ConfigError for Synchronous", bad, err)
		}
	}
}
