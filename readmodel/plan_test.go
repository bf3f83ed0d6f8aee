package readmodel_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/ductworktype"
	"github.com/ductwork-go/ductwork/internal/windowtest"
	"github.com/ductwork-go/ductwork/readmodel"
)

// TestListingPlans: on 100,000 runs and 200,000 executions, PostgreSQL and
// MariaDB plan every listing query (runs, including by trigger key, and a
// run's executions) with an index, never a full scan of a table.
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
			for _, q := range seedKeysAndExecutionsSQL[kind] {
				if err := e.Exec(ctx, q); err != nil {
					t.Fatalf("seed keys and executions: %v", err)
				}
			}
			if err := e.Analyze(ctx); err != nil {
				t.Fatal(err)
			}
			base := time.UnixMicro(1700000000000000).UTC()
			queries := map[string]string{}
			for name, f := range map[string]readmodel.RunFilter{
				"newest":          {},
				"before":          {Before: 20_000},
				"status":          {Statuses: []ductworktype.RunStatus{ductworktype.RunHalted}},
				"statuses":        {Statuses: []ductworktype.RunStatus{ductworktype.RunHalted, ductworktype.RunRunning}},
				"pipeline":        {Pipeline: "p1"},
				"pipeline-status": {Pipeline: "p0", Statuses: []ductworktype.RunStatus{ductworktype.RunHalted}},
				"time-range":      {From: base.Add(40_000 * time.Second), To: base.Add(41_000 * time.Second)},
				"error":           {Statuses: []ductworktype.RunStatus{ductworktype.RunHalted}, ErrorContains: "order 5"},
				"key":             {Key: "order-5000"},
				"pipeline-key":    {Pipeline: "p0", Key: "order-5000"},
			} {
				queries["runs/"+name] = e.Store.RunsSQL(&f)
			}
			for name, f := range map[string]readmodel.ExecutionFilter{
				"run":       {RunID: 50_000},
				"run-after": {RunID: 50_000, After: 1},
				"run-node":  {RunID: 50_000, Node: "charge"},
				"run-job":   {RunID: 50_000, JobID: 100_001},
			} {
				queries["executions/"+name] = e.Store.ExecutionsSQL(&f)
			}
			for name, query := range queries {
				text := explain(t, e, kind, query)
				t.Logf("%s:\n%s", name, text)
				// A derived table (MariaDB's materialized union of a
				// run's executions, at most two pages) is not a table.
				if strings.Contains(text, "Seq Scan") || strings.Contains(strings.ReplaceAll(text, "table=<derived2> type=ALL", ""), "type=ALL") {
					t.Errorf("%s: the plan scans the whole table:\n%s\n%s", name, query, text)
				}
			}
		})
	}
}

// seedKeysAndExecutionsSQL gives one run in a hundred a trigger key
// ("order-<id>") and every run two executions.
var seedKeysAndExecutionsSQL = map[string][]string{
	"postgres": {
		`UPDATE {schema}.ductwork_runs SET trigger_key = 'order-' || id WHERE id % 100 = 0`,
		`INSERT INTO {schema}.ductwork_executions (run_id, job_id, node_id, scope, attempt, crashes, fence, process_id, started_at, finished_at, outcome)
SELECT r.id, r.id * 2 + k, CASE WHEN k = 0 THEN 'receive' ELSE 'charge' END, '', 1, 0, 1, 'p', r.created_at, r.created_at, 'completed'
FROM {schema}.ductwork_runs AS r, generate_series(0, 1) AS k ORDER BY r.id, k`,
	},
	"mysql": {
		`UPDATE {schema}.ductwork_runs SET trigger_key = CONCAT('order-', id) WHERE id % 100 = 0`,
		`INSERT INTO {schema}.ductwork_executions (run_id, job_id, node_id, scope, attempt, crashes, fence, process_id, started_at, finished_at, outcome)
SELECT r.id, r.id * 2 + k.k, IF(k.k = 0, 'receive', 'charge'), '', 1, 0, 1, 'p', r.created_at, r.created_at, 'completed'
FROM {schema}.ductwork_runs AS r, (SELECT 0 AS k UNION ALL SELECT 1) AS k ORDER BY r.id, k.k`,
	},
}

// explain returns the plan of query, one line per row.
func explain(t *testing.T, e *windowtest.Env, kind, query string) string {
	t.Helper()
	rows, err := e.ReadDB.QueryContext(t.Context(), "EXPLAIN "+query)
	if err != nil {
		t.Fatalf("EXPLAIN %s: %v", query, err)
	}
	defer rows.Close()
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
	return strings.Join(plan, "\n")
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
