package migration_test

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/ductwork-go/ductwork/internal/migration"
)

func TestLoad(t *testing.T) {
	fsys := fstest.MapFS{
		"migrations/0002_b.sql": {Data: []byte("B;\n")},
		"migrations/0001_a.sql": {Data: []byte("A;\n")},
	}
	files, err := migration.Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Name != "0001_a.sql" || files[1].Version != 2 || files[1].SQL != "B;\n" {
		t.Fatalf("Load = %+v", files)
	}
	if got := migration.Latest(files); got != 2 {
		t.Fatalf("Latest = %d; want 2", got)
	}
	for name, bad := range map[string]fstest.MapFS{
		"malformed": {"migrations/init.sql": {}},
		"zero":      {"migrations/0000_a.sql": {}},
		"gap":       {"migrations/0001_a.sql": {}, "migrations/0003_c.sql": {}},
		"repeat":    {"migrations/0001_a.sql": {}, "migrations/0001_b.sql": {}},
	} {
		if _, err := migration.Load(bad); err == nil {
			t.Errorf("%s: Load returned no error", name)
		}
	}
}

func TestStatements(t *testing.T) {
	src := "-- comment\nCREATE TABLE t (\n  a INT\n);\n\nINSERT INTO t VALUES (1);\nSELECT 1"
	want := []string{"CREATE TABLE t (\n  a INT\n)", "INSERT INTO t VALUES (1)", "SELECT 1"}
	if got := migration.Statements(src); !slices.Equal(got, want) {
		t.Fatalf("Statements = %q; want %q", got, want)
	}
}

func TestWriteScript(t *testing.T) {
	files := []migration.File{{Version: 1, Name: "0001_a.sql", SQL: "CREATE {x};\n"}}
	var sb strings.Builder
	migration.WriteScript(&sb, files, func(s string) string { return strings.ReplaceAll(s, "{x}", "y") },
		func(v int) string { return "RECORD " + string(rune('0'+v)) })
	if want := "\n-- 0001_a.sql\nCREATE y;\n\nRECORD 1;\n"; sb.String() != want {
		t.Fatalf("WriteScript = %q; want %q", sb.String(), want)
	}
}
