// Package migration reads the embedded, numbered migration files that every
// backend ships (migrations/NNNN_name.sql) and renders them as one script.
// The SQL, the version table and the lock stay each backend's own: only the
// file handling, which must agree across the three, lives here.
package migration

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Dir is the directory, in a backend's embedded file system, that holds its
// migration files.
const Dir = "migrations"

// File is one migration file.
type File struct {
	// Version is the file's number, from 1.
	Version int
	// Name is the file's base name, such as "0001_init.sql".
	Name string
	// SQL is the file's content.
	SQL string
}

// Load reads the files of Dir in fsys, in version order. Every file must be
// named NNNN_name.sql, and the versions must run from 1 with no gap and no
// repeat (a migration that is skipped or applied twice would leave a schema
// that no version number describes).
func Load(fsys fs.FS) ([]File, error) {
	entries, err := fs.ReadDir(fsys, Dir)
	if err != nil {
		return nil, err
	}
	var files []File
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %q is not named NNNN_name.sql", name)
		}
		body, err := fs.ReadFile(fsys, path.Join(Dir, name))
		if err != nil {
			return nil, err
		}
		files = append(files, File{Version: v, Name: name, SQL: string(body)})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Version < files[j].Version })
	for i, f := range files {
		if i > 0 && f.Version == files[i-1].Version {
			return nil, fmt.Errorf("migration files %q and %q share version %d", files[i-1].Name, f.Name, f.Version)
		}
		if f.Version != i+1 {
			return nil, fmt.Errorf("migration file %q is out of sequence: want version %d", f.Name, i+1)
		}
	}
	return files, nil
}

// Latest is the newest version of files (as Load returns them), 0 when
// there is none.
func Latest(files []File) int {
	if len(files) == 0 {
		return 0
	}
	return files[len(files)-1].Version
}

// Statements splits a migration file into its statements, for a driver that
// runs one statement per call: comment lines (starting with "--") are
// dropped and a statement ends with a semicolon at the end of a line. The
// files are written to that rule.
func Statements(src string) []string {
	var out []string
	var cur strings.Builder
	for line := range strings.Lines(src) {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// WriteScript writes files to sb as Migrate applies them, for review or for
// applying by hand: per file a comment naming it, its SQL passed through
// render (nil leaves it as it is), and the statement record returns for its
// version, which records it in the version table.
func WriteScript(sb *strings.Builder, files []File, render func(string) string, record func(version int) string) {
	for _, f := range files {
		body := f.SQL
		if render != nil {
			body = render(body)
		}
		fmt.Fprintf(sb, "\n-- %s\n", f.Name)
		sb.WriteString(strings.TrimSpace(body))
		sb.WriteString("\n\n")
		sb.WriteString(record(f.Version) + ";\n")
	}
}
