package sqlite_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/ductwork-go/ductwork/backend"
)

// BenchmarkStep measures one step: claim a job and complete it with a plan
// that inserts the next one, by `workers` concurrent workers claiming up to
// `batch` jobs each time. Reports steps/s.
func BenchmarkStep(b *testing.B) {
	for _, bc := range []struct{ workers, batch int }{{1, 1}, {1, 16}, {8, 1}, {8, 16}} {
		b.Run(fmt.Sprintf("workers=%d/batch=%d", bc.workers, bc.batch), func(b *testing.B) {
			ctx := context.Background()
			be := openAt(b, dbPath(b))
			if err := be.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			// Enough runs that every worker finds work.
			for i := range bc.workers * bc.batch * 2 {
				if _, err := be.Trigger(ctx, &backend.TriggerParams{Pipeline: def.Pipeline, Fingerprint: def.Fingerprint,
					First: backend.NewJob{NodeID: "s", Scope: fmt.Sprint(i), Input: []byte(`{"n":0}`)}}); err != nil {
					b.Fatal(err)
				}
			}
			var (
				mu    sync.Mutex
				left  = b.N
				wg    sync.WaitGroup
				next  = make([]int, bc.workers)
				first error
			)
			take := func(n int) int {
				mu.Lock()
				defer mu.Unlock()
				n = min(n, left)
				left -= n
				return n
			}
			b.ResetTimer()
			for w := range bc.workers {
				wg.Go(func() {
					process := fmt.Sprint("w", w)
					for {
						n := take(bc.batch)
						if n == 0 {
							return
						}
						res, err := be.Claim(ctx, &backend.ClaimParams{ProcessID: process, Limit: n, Definitions: []backend.DefinitionRef{def}})
						if err != nil {
							mu.Lock()
							first = err
							mu.Unlock()
							return
						}
						if len(res.Jobs) < n {
							mu.Lock()
							left += n - len(res.Jobs)
							mu.Unlock()
						}
						for _, j := range res.Jobs {
							next[w]++
							_, err := be.Complete(ctx, &backend.CompleteParams{JobID: j.ID, ProcessID: process, Fence: j.Fence,
								Output: []byte(`{"ok":true}`), Plan: backend.Plan{Jobs: []backend.NewJob{
									{NodeID: "s", Scope: fmt.Sprint(process, ".", next[w]), Input: []byte(`{"n":1}`)}}}})
							if err != nil {
								mu.Lock()
								first = err
								mu.Unlock()
								return
							}
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if first != nil {
				b.Fatal(first)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "steps/s")
		})
	}
}
