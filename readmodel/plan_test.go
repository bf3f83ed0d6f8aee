package readmodel_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/internal/windowtest"
	"github.com/ductwork-go/ductwork/readmodel"
)

// TestListingPlans: on 100,000 runs, PostgreSQL and MariaDB plan every
// listing query with an index, never a full scan of the runs table.
func TestListingPlans(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 100,000 runs")
	}
	for _, kind := range []string{"postgres", "mysql"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := windowtest.Open(t, kind)
			ctx := context.Background()
			if err := e.Exec(ctx, seedSQL[kind]); err != nil {
				t.Fatalf("seed: %v", err)
			}
			if err := e.Analyze(ctx); err != nil {
				t.Fatal(err)
			}
			base := time.UnixMicro(1700000000000000).UTC()
			for name, f := range map[string]readmodel.RunFilter{
				"newest":          {},
				"before":          {Before: 20_000},
				"status":          {Statuses: []string{"halted"}},
				"statuses":        {Statuses: []string{"halted", "running"}},
				"pipeline":        {Pipeline: "p1"},
				"pipeline-status": {Pipeline: "p0", Statuses: []string{"halted"}},
				"time-range":      {From: base.Add(40_000 * time.Second), To: base.Add(41_000 * time.Second)},
				"error":           {Statuses: []string{"halted"}, ErrorContains: "order 5"},
			} {
				query := e.Store.RunsSQL(&f)
				rows, err := e.ReadDB.QueryContext(ctx, "EXPLAIN "+query)
				if err != nil {
					t.Fatalf("%s: EXPLAIN %s: %v", name, query, err)
				}
				cols, _ := rows.Columns()
				var plan []string
				for rows.Next() {
					vals := make([]any, len(cols))
					ptrs := make([]any, len(cols))
					for i := range vals {
						ptrs[i] = &vals[i]
					}
					if err := rows.Scan(ptrs...); err != nil {
						t.Fatal(err)
					}
					var line []string
					for i, v := range vals {
						if b, ok := v.([]byte); ok {
							v = string(b)
						}
						if kind == "mysql" {
							line = append(line, cols[i]+"="+toString(v))
						} else {
							line = append(line, toString(v))
						}
					}
					plan = append(plan, strings.Join(line, " "))
				}
				rows.Close()
				text := strings.Join(plan, "\n")
				t.Logf("%s:\n%s", name, text)
				if strings.Contains(text, "Seq Scan") || strings.Contains(text, "type=ALL") {
					t.Errorf("%s: the plan scans the whole table:\n%s\n%s", name, query, text)
				}
			}
		})
	}
}

func toString(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return x
	default:
		return strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(fmtAny(x), "\n", " "), "  ", " "))
	}
}

func fmtAny(v any) string { return fmt.Sprint(v) }
