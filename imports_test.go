package ductwork_test

import (
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
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
	// Test machinery no library package may depend on; the first four are
	// not even requirements of the module (nested modules hold them).
	notRequired := []string{"github.com/testcontainers", "github.com/moby", "go.uber.org/goleak", "github.com/chromedp"}
	testOnly := append([]string{"github.com/Shopify/toxiproxy"}, notRequired...)
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
				pkg == module+"/internal/faultproxy" {
				continue // the fault proxy (toxiproxy) serves tests and the chaos command
			}
			for _, dep := range nonStd(pkg) {
				if hasPrefix(dep, testOnly) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	})
	t.Run("go.mod requires no test-only module", func(t *testing.T) {
		// What a program that requires this module inherits.
		out, err := exec.Command("go", "mod", "edit", "-json").Output()
		if err != nil {
			t.Fatalf("go mod edit -json: %v", err)
		}
		var mod struct{ Require []struct{ Path string } }
		if err := json.Unmarshal(out, &mod); err != nil {
			t.Fatal(err)
		}
		for _, r := range mod.Require {
			if hasPrefix(r.Path, notRequired) {
				t.Errorf("go.mod requires %s: test machinery belongs to a nested module (ARCHITECTURE.md, Modules)", r.Path)
			}
		}
	})
	t.Run("no package of the module, tests included, depends on test-only modules", func(t *testing.T) {
		for _, dep := range goList(t, "-deps", "-test", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", module+"/...") {
			if hasPrefix(dep, notRequired) {
				t.Errorf("a package of the module or its tests depends on %s", dep)
			}
		}
	})
	t.Run("crash points are compiled out without their build tag", func(t *testing.T) {
		// Without the tag the package imports nothing, not even os: no
		// variable is read and Hit is an empty function.
		deps := goList(t, "-deps", module+"/internal/crashpoint")
		if len(deps) != 1 || deps[0] != module+"/internal/crashpoint" {
			t.Errorf("internal/crashpoint without the build tag depends on %v", deps)
		}
		tagged := goList(t, "-deps", "-tags", "ductwork_crashpoints", module+"/internal/crashpoint")
		if !slices.Contains(tagged, "os") {
			t.Errorf("internal/crashpoint with the build tag does not read the environment (deps %v)", tagged)
		}
	})
}
