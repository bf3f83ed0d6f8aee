package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/readmodel"
)

// runView is what `ductwork run` prints.
type runView struct {
	Run   *readmodel.RunDetail  `json:"run"`
	Nodes []readmodel.NodeState `json:"nodes"`
	now   time.Time
}

func loadRun(ctx context.Context, st *readmodel.Store, id int64) (*runView, error) {
	r, err := st.Run(ctx, id)
	if err != nil {
		return nil, err
	}
	shape, err := st.Shape(ctx, backend.DefinitionRef{Pipeline: r.Pipeline, Fingerprint: r.Fingerprint})
	if err != nil && !errors.Is(err, readmodel.ErrNotFound) {
		return nil, err
	}
	steps, err := st.Steps(ctx, id, 0)
	if err != nil {
		return nil, err
	}
	now, err := st.Now(ctx)
	if err != nil {
		return nil, err
	}
	return &runView{Run: r, Nodes: readmodel.Tree(shape, steps), now: now}, nil
}

// progress is "finished/total steps".
func (v *runView) progress() (done, total int) {
	for _, n := range v.Nodes {
		total += n.Total()
		done += n.Counts[backend.JobCompleted]
	}
	return done, total
}

func (v *runView) print(w io.Writer) error {
	r := v.Run
	fmt.Fprintf(w, "run %d  %s@%s  %s  created %s  updated %s\n", r.ID, r.Pipeline, r.Fingerprint, strings.ToUpper(string(r.Status)), r.CreatedAt.Format(time.DateTime), r.UpdatedAt.Format(time.DateTime))
	if r.Status == ductwork.RunHalted {
		at := r.HaltNode
		if r.HaltScope != "" {
			at += "[" + r.HaltScope + "]"
		}
		fmt.Fprintf(w, "halted at %s (%s, attempt %d): %s\n", at, r.HaltCause, r.HaltAttempt, oneLine(r.Error, 200))
	} else if r.Error != "" {
		fmt.Fprintf(w, "reason: %s\n", oneLine(r.Error, 200))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tKIND\tSTATUS\tATTEMPTS\tCRASHES\tDURATION\tLAST ERROR")
	for _, n := range v.Nodes {
		if len(n.Instances) == 1 && n.Instances[0].Scope == "" {
			s := n.Instances[0]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", n.Node.ID, n.Node.Kind, s.Status, s.Attempt, s.Crashes, s.Duration(v.now).Round(time.Millisecond), oneLine(s.Error, 80))
			continue
		}
		var parts []string
		for _, st := range []ductwork.StepStatus{ductwork.StepCompleted, ductwork.StepRunning, ductwork.StepWaiting, ductwork.StepPending, ductwork.StepFailed, ductwork.StepCancelled} {
			if c := n.Counts[st]; c > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", c, st))
			}
		}
		summary := n.State
		if len(parts) > 0 {
			summary = strings.Join(parts, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\t\n", n.Node.ID, n.Node.Kind, summary)
		for _, s := range n.Instances {
			fmt.Fprintf(tw, "  %s[%s]\t\t%s\t%d\t%d\t%s\t%s\n", n.Node.ID, s.Scope, s.Status, s.Attempt, s.Crashes, s.Duration(v.now).Round(time.Millisecond), oneLine(s.Error, 80))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	done, total := v.progress()
	fmt.Fprintf(w, "progress: %d/%d steps completed\n", done, total)
	return nil
}

func cmdRun(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("run")
	watch := fs.Bool("watch", false, "redraw until the run stops running")
	interval := fs.Duration("interval", time.Second, "redraw interval of --watch")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	id, err := runID(pos)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	for frame := 0; ; frame++ {
		v, err := loadRun(ctx, c.store, id)
		if err != nil {
			return err
		}
		if *asJSON {
			if err := writeJSON(g.stdout, v); err != nil {
				return err
			}
		} else {
			if *watch && frame > 0 {
				fmt.Fprint(g.stdout, "\033[H\033[2J") // clear the terminal
			}
			if err := v.print(g.stdout); err != nil {
				return err
			}
		}
		if !*watch || (v.Run.Status != ductwork.RunRunning && v.Run.Status != ductwork.RunWaiting) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}
