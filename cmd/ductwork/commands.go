package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/readmodel"
)

// connect opens the database of g.
func (g *globals) connect(ctx context.Context) (*conn, error) {
	return open(ctx, g.databaseURL)
}

// parseConnect parses a command's flags and opens g's database, for the
// commands that take no positional argument (any given are ignored). The
// caller closes the conn.
func (g *globals) parseConnect(ctx context.Context, fs *flag.FlagSet, args []string) (*conn, error) {
	if _, err := parse(fs, args); err != nil {
		return nil, err
	}
	return g.connect(ctx)
}

// client returns a client on c's backend for actions.
func (c *conn) client() (*ductwork.Client, error) {
	return ductwork.NewClient(c.backend, nil)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdMigrate(ctx context.Context, g *globals, args []string) error {
	c, err := g.parseConnect(ctx, g.flags("migrate"), args)
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.backend.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	v, err := c.store.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "schema at version %d\n", v)
	return nil
}

// parseTime reads an RFC 3339 time or a duration before now ("2h").
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-01-02T15:04:05Z) or a duration ago (2h)", s)
	}
	return t, nil
}

func cmdRuns(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("runs")
	var f readmodel.RunFilter
	var status, since, until string
	var asJSON bool
	fs.StringVar(&f.Pipeline, "pipeline", "", "only runs of this pipeline")
	fs.StringVar(&status, "status", "", "only runs in these statuses (comma-separated: running,waiting,completed,halted,cancelled)")
	fs.StringVar(&since, "since", "", "only runs created at or after (RFC 3339, or a duration ago such as 2h)")
	fs.StringVar(&until, "until", "", "only runs created before (RFC 3339, or a duration ago)")
	fs.StringVar(&f.ErrorContains, "error", "", "only runs whose error contains this text")
	fs.StringVar(&f.Key, "key", "", "only the run triggered with this key (ductwork.WithKey)")
	fs.IntVar(&f.Limit, "limit", readmodel.DefaultPageSize, "page size")
	fs.Int64Var(&f.Before, "before", 0, "only runs with a smaller ID (the next-page cursor)")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	for _, s := range strings.Split(status, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !ductwork.RunStatus(s).Valid() {
			return fmt.Errorf("unknown status %q (want running, waiting, completed, halted or cancelled)", s)
		}
		f.Statuses = append(f.Statuses, ductwork.RunStatus(s))
	}
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	now, err := c.store.Now(ctx)
	if err != nil {
		return err
	}
	if f.From, err = parseTime(since, now); err != nil {
		return err
	}
	if f.To, err = parseTime(until, now); err != nil {
		return err
	}
	page, err := c.store.Runs(ctx, &f)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(g.stdout, page)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPIPELINE\tSTATUS\tCREATED\tUPDATED\tERROR")
	for _, r := range page.Runs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Pipeline, r.Status, r.CreatedAt.Format(time.DateTime), r.UpdatedAt.Format(time.DateTime), oneLine(r.Error, 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.Next != 0 {
		fmt.Fprintf(g.stdout, "next page: --before %d\n", page.Next)
	}
	return nil
}

// oneLine shortens s to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func runID(args []string) (int64, error) {
	if len(args) != 1 {
		return 0, errors.New("want one run ID")
	}
	id, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("run ID %q is not a positive integer", args[0])
	}
	return id, nil
}

func cmdRevive(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("revive")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := runID(pos)
	if err != nil {
		return fmt.Errorf("revive: %w", err)
	}
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.Revive(ctx, id); err != nil {
		return fmt.Errorf("revive run %d: %w", id, err)
	}
	fmt.Fprintf(g.stdout, "run %d revived\n", id)
	return nil
}

func cmdCancel(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("cancel")
	reason := fs.String("reason", "", "why the run is cancelled (required)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := runID(pos)
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	if strings.TrimSpace(*reason) == "" {
		return errors.New("cancel: --reason is required")
	}
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.Cancel(ctx, id, *reason); err != nil {
		return fmt.Errorf("cancel run %d: %w", id, err)
	}
	fmt.Fprintf(g.stdout, "run %d cancelled\n", id)
	return nil
}

func cmdProcesses(ctx context.Context, g *globals, args []string) error {
	return list(ctx, g, "processes", args, (*readmodel.Store).Processes,
		"ID\tHOST\tPID\tSTARTED\tHEARTBEAT\tLIVE\tDEFINITIONS", func(w io.Writer, p readmodel.Process) {
			var defs []string
			for _, d := range p.Definitions {
				defs = append(defs, d.Pipeline+"@"+d.Fingerprint)
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s ago\t%t\t%s\n", p.ID, p.Host, p.PID, p.StartedAt.Format(time.DateTime), p.HeartbeatAge.Round(time.Millisecond), p.Live, strings.Join(defs, " "))
		})
}

func cmdDefinitions(ctx context.Context, g *globals, args []string) error {
	return list(ctx, g, "definitions", args, (*readmodel.Store).Definitions,
		"PIPELINE\tFINGERPRINT\tSTORED\tUNFINISHED\tLIVE PROCESSES\tSTRANDED", func(w io.Writer, d readmodel.Definition) {
			fmt.Fprintf(w, "%s\t%s\t%t\t%d\t%d\t%t\n", d.Pipeline, d.Fingerprint, d.Stored, d.Unfinished, d.LiveProcesses, d.Stranded)
		})
}

func cmdSchedules(ctx context.Context, g *globals, args []string) error {
	return list(ctx, g, "schedules", args, (*readmodel.Store).Schedules,
		"NAME\tPIPELINE\tSPEC\tTIMEZONE\tMISSED\tPAUSED\tNEXT TICK\tLAST TICK\tLAST RUN", func(w io.Writer, s readmodel.Schedule) {
			last, run := "-", "-"
			if !s.LastTick.IsZero() {
				last = s.LastTick.Format(time.DateTime)
			}
			if s.LastRunID != 0 {
				run = strconv.FormatInt(s.LastRunID, 10)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%t\t%s\t%s\t%s\n", s.Name, s.Pipeline, s.Spec, s.Timezone, s.Missed, s.Paused,
				s.NextTick.Format(time.DateTime), last, run)
		})
}

// list runs a listing command: its one flag is --json; it reads the rows
// with fetch and prints them as JSON, or as a table of header and one line
// per row written by line.
func list[T any](ctx context.Context, g *globals, name string, args []string,
	fetch func(*readmodel.Store, context.Context) ([]T, error), header string, line func(io.Writer, T)) error {
	fs := g.flags(name)
	asJSON := fs.Bool("json", false, "print JSON")
	c, err := g.parseConnect(ctx, fs, args)
	if err != nil {
		return err
	}
	defer c.close()
	rows, err := fetch(c.store, ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(g.stdout, rows)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		line(tw, r)
	}
	return tw.Flush()
}

// Exit statuses of health.
const (
	exitNotMigrated = 2
	exitNoProcess   = 3
	exitStepsWait   = 4
)

func cmdHealth(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("health")
	maxWait := fs.Duration("max-wait", time.Minute, "unhealthy when the oldest due step has waited longer")
	c, err := g.parseConnect(ctx, fs, args)
	if err != nil {
		return err
	}
	defer c.close()
	v, err := c.store.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if v < c.latest {
		return &exitError{exitNotMigrated, fmt.Sprintf("unhealthy: schema at version %d, want %d (run ductwork migrate)", v, c.latest)}
	}
	ps, err := c.store.Processes(ctx)
	if err != nil {
		return err
	}
	live := 0
	for _, p := range ps {
		if p.Live {
			live++
		}
	}
	if live == 0 {
		return &exitError{exitNoProcess, "unhealthy: no live supervisor process"}
	}
	wait, err := c.store.OldestDue(ctx)
	if err != nil {
		return err
	}
	if wait > *maxWait {
		return &exitError{exitStepsWait, fmt.Sprintf("unhealthy: the oldest due step has waited %s (more than %s)", wait.Round(time.Millisecond), *maxWait)}
	}
	fmt.Fprintf(g.stdout, "healthy: schema version %d, %d live process(es), oldest due step waiting %s\n", v, live, wait.Round(time.Millisecond))
	return nil
}
