package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/ductwork-go/ductwork/readmodel"
)

// cmdExecutions prints the execution history of a run: one line per
// execution (a claim of a step instance, from its start to the write that
// ended it), oldest first.
func cmdExecutions(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("executions")
	var f readmodel.ExecutionFilter
	var asJSON, stacks bool
	fs.StringVar(&f.Node, "step", "", "only executions of this step (node)")
	fs.Int64Var(&f.JobID, "job", 0, "only executions of this step instance (job ID)")
	fs.IntVar(&f.Limit, "limit", readmodel.DefaultPageSize, "page size")
	fs.Int64Var(&f.After, "after", 0, "only executions with a larger ID (the next-page cursor)")
	fs.BoolVar(&stacks, "stack", false, "print the stack of each failure under the table")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := runID(pos)
	if err != nil {
		return err
	}
	if f.Limit <= 0 || f.Limit > readmodel.MaxPageSize {
		return fmt.Errorf("--limit %d: want 1 to %d", f.Limit, readmodel.MaxPageSize)
	}
	if f.JobID < 0 || f.After < 0 {
		return fmt.Errorf("--job and --after must not be negative")
	}
	f.RunID = id
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	if _, err := c.store.Run(ctx, id); err != nil {
		return err
	}
	page, err := c.store.Executions(ctx, &f)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(g.stdout, page)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTEP\tATTEMPT\tCRASHES\tPROCESS\tSTARTED\tENDED\tDURATION\tOUTCOME\tERROR")
	for _, e := range page.Executions {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, stepName(e.Node, e.Scope), e.Attempt, e.Crashes,
			oneLine(e.ProcessID, 40), clock(e.StartedAt), clock(e.FinishedAt), e.Duration().Round(time.Millisecond),
			e.Outcome, oneLine(e.Error, 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(page.Executions) == 0 {
		fmt.Fprintf(g.stdout, "run %d has no finished executions yet\n", id)
	}
	if stacks {
		for _, e := range page.Executions {
			if e.Stack != "" {
				fmt.Fprintf(g.stdout, "\nexecution %d (%s, attempt %d): %s\n%s\n", e.ID, stepName(e.Node, e.Scope), e.Attempt, e.Error, e.Stack)
			}
		}
	}
	if page.Next != 0 {
		fmt.Fprintf(g.stdout, "next page: --after %d\n", page.Next)
	}
	return nil
}

// stepName is node[scope], or node at the top level.
func stepName(node, scope string) string {
	if scope == "" {
		return node
	}
	return node + "[" + scope + "]"
}

// clock formats a stored time with milliseconds, or "-" when unset.
func clock(t readmodel.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format("2006-01-02 15:04:05.000")
}
