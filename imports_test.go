package ductwork_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/ductwork-go/ductwork"

// goList runs `go list` with args and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Skipf("go list unavailable: %v", err)
	}
	return strings.Fields(string(out))
}

// The import graph of ARCHITECTURE.md, checked on what the go command
// resolves (transitively), so no checkout path or lint glob can hide a
// violation.
func TestImportGraph(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	t.Parallel()
	drivers := []string{"github.com/jackc/pgx", "github.com/go-sql-driver/mysql", "github.com/mattn/go-sqlite3", "go.opentelemetry.io"}
	testOnly := []string{"github.com/testcontainers", "github.com/moby", "go.uber.org/goleak", "github.com/Shopify/toxiproxy"}
	nonStd := func(pkg string) []string {
		return goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg)
	}
	hasPrefix := func(dep string, prefixes []string) bool {
		for _, p := range prefixes {
			if dep == p || strings.HasPrefix(dep, p+"/") {
				return true
			}
		}
		return false
	}

	t.Run("backend imports only the standard library", func(t *testing.T) {
		for _, dep := range nonStd(module + "/backend") {
			if dep != module+"/backend" {
				t.Errorf("backend depends on %s", dep)
			}
		}
	})
	t.Run("ductworktype imports only the standard library", func(t *testing.T) {
		for _, dep := range nonStd(module + "/ductworktype") {
			if dep != module+"/ductworktype" {
				t.Errorf("ductworktype depends on %s", dep)
			}
		}
	})
	t.Run("otel uses only the public API", func(t *testing.T) {
		for _, imp := range goList(t, "-f", "{{join .Imports \" \"}}", module+"/otel") {
			if strings.HasPrefix(imp, module+"/internal/") {
				t.Errorf("otel imports %s; a hook needs only public packages (ductworktype)", imp)
			}
		}
	})
	t.Run("the core never reaches a driver or OpenTelemetry", func(t *testing.T) {
		for _, pkg := range []string{"", "/flow", "/step", "/supervisor", "/internal/engine", "/internal/graph", "/readmodel", "/dashboard"} {
			for _, dep := range nonStd(module + pkg) {
				if hasPrefix(dep, drivers) {
					t.Errorf("%s depends on %s", module+pkg, dep)
				}
			}
		}
	})
	t.Run("direct imports of drivers and OpenTelemetry stay in their packages", func(t *testing.T) {
		owner := map[string]string{
			"github.com/jackc/pgx":           module + "/backend/postgres",
			"github.com/go-sql-driver/mysql": module + "/backend/mysql",
			"github.com/mattn/go-sqlite3":    module + "/backend/sqlite",
			"go.opentelemetry.io":            module + "/otel",
		}
		lines := goList(t, "-f", "{{.ImportPath}}|{{join .Imports \"|\"}}", module+"/...")
		for _, line := range lines {
			parts := strings.Split(line, "|")
			pkg := parts[0]
			if strings.HasPrefix(pkg, module+"/cmd/") || strings.HasPrefix(pkg, module+"/examples/") || pkg == module+"/internal/testdb" || pkg == module+"/internal/windowtest" {
				continue // programs and test tooling may use any driver
			}
			for _, imp := range parts[1:] {
				for prefix, want := range owner {
					if hasPrefix(imp, []string{prefix}) && pkg != want {
						t.Errorf("%s imports %s; only %s may", pkg, imp, want)
					}
				}
			}
		}
	})
	t.Run("library packages do not pull in test machinery", func(t *testing.T) {
		for _, pkg := range goList(t, module+"/...") {
			if strings.HasPrefix(pkg, module+"/cmd/") || strings.HasPrefix(pkg, module+"/examples/") ||
				strings.HasPrefix(pkg, module+"/internal/testdb") || strings.HasPrefix(pkg, module+"/internal/faultproxy") ||
				pkg == module+"/internal/windowtest" {
				continue // test tooling (the fault proxy serves tests and the chaos command)
			}
			for _, dep := range nonStd(pkg) {
				if hasPrefix(dep, testOnly) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	})
}
