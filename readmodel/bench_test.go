package readmodel_test

import (
	"context"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/ductworktype"
	"github.com/ductwork-go/ductwork/internal/windowtest"
	"github.com/ductwork-go/ductwork/readmodel"
)

// seedSQL inserts 100,000 runs in one statement per dialect: five
// pipelines, one run in ten halted with an error, the others completed,
// created one second apart.
var seedSQL = map[string]string{
	"sqlite": `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
INSERT INTO {schema}.ductwork_runs (pipeline, fingerprint, status, error, created_at, updated_at)
SELECT 'p' || (i % 5), 'f', CASE WHEN i % 10 = 0 THEN 'halted' ELSE 'completed' END,
       CASE WHEN i % 10 = 0 THEN 'card declined for order ' || i ELSE '' END,
       1700000000000000 + i * 1000000, 1700000000000000 + i * 1000000 FROM n`,
	// A cross join of digits: MariaDB caps recursive CTEs at 1000 rows.
	"mysql": `INSERT INTO {schema}.ductwork_runs (pipeline, fingerprint, status, error, created_at, updated_at)
SELECT CONCAT('p', i % 5), 'f', IF(i % 10 = 0, 'halted', 'completed'),
       IF(i % 10 = 0, CONCAT('card declined for order ', i), ''),
       1700000000000000 + i * 1000000, 1700000000000000 + i * 1000000
FROM (SELECT a.d + 10 * b.d + 100 * c.d + 1000 * d.d + 10000 * e.d + 1 AS i FROM ` + digits + ` a, ` + digits + ` b, ` + digits + ` c, ` + digits + ` d, ` + digits + ` e) n ORDER BY i`,
	"postgres": `INSERT INTO {schema}.ductwork_runs (pipeline, fingerprint, status, error, created_at, updated_at)
SELECT 'p' || (i % 5), 'f', CASE WHEN i % 10 = 0 THEN 'halted' ELSE 'completed' END,
       CASE WHEN i % 10 = 0 THEN 'card declined for order ' || i ELSE '' END,
       to_timestamp(1700000000 + i), to_timestamp(1700000000 + i) FROM generate_series(1, 100000) AS i`,
}

const digits = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"

// BenchmarkRunsPage reads one page of 50 runs out of 100,000, per backend
// and filter: the first page, a page deep in the keyset, by pipeline and
// status, and by time range.
func BenchmarkRunsPage(b *testing.B) {
	for _, kind := range windowtest.Kinds {
		b.Run(kind, func(b *testing.B) {
			e := windowtest.Open(b, kind)
			ctx := context.Background()
			if err := e.Exec(ctx, seedSQL[kind]); err != nil {
				b.Fatalf("seed: %v", err)
			}
			if err := e.Analyze(ctx); err != nil {
				b.Fatalf("analyze: %v", err)
			}
			base := time.UnixMicro(1700000000000000).UTC()
			filters := map[string]readmodel.RunFilter{
				"newest":          {Limit: 50},
				"deep-keyset":     {Limit: 50, Before: 20_000},
				"pipeline-status": {Limit: 50, Pipeline: "p0", Statuses: []ductworktype.RunStatus{ductworktype.RunHalted}},
				"time-range":      {Limit: 50, From: base.Add(40_000 * time.Second), To: base.Add(41_000 * time.Second)},
			}
			for name, f := range filters {
				b.Run(name, func(b *testing.B) {
					for b.Loop() {
						p, err := e.Store.Runs(ctx, &f)
						if err != nil {
							b.Fatal(err)
						}
						if len(p.Runs) != 50 {
							b.Fatalf("page of %d runs", len(p.Runs))
						}
					}
				})
			}
		})
	}
}
