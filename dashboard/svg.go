package dashboard

import (
	"fmt"
	"html"
	"net/url"
	"strings"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/readmodel"
)

// Colours of node states: fill and stroke.
var stateColours = map[string][2]string{
	readmodel.StateCompleted:  {"#d3f9d8", "#2b8a3e"},
	readmodel.StateRunning:    {"#dbe4ff", "#364fc7"},
	readmodel.StatePending:    {"#fff3bf", "#e67700"},
	readmodel.StateWaiting:    {"#e5dbff", "#5f3dc4"},
	readmodel.StateFailed:     {"#ffe3e3", "#c92a2a"},
	readmodel.StateCancelled:  {"#e9ecef", "#495057"},
	readmodel.StateNotReached: {"#f8f9fa", "#adb5bd"},
}

const (
	nodeW, nodeH = 200, 56
	gapX, gapY   = 56, 22
	pad          = 16
)

// drawDAG draws the run's graph as SVG: one column per depth from the start,
// nodes shaped by transition kind and coloured by state, edges from each
// predecessor. Every text from the database is escaped here (the result is
// inserted as trusted HTML).
func drawDAG(nodes []readmodel.NodeState, run *readmodel.RunDetail) string {
	depth := map[string]int{}
	var depthOf func(i int, seen int) int
	byID := map[string]int{}
	for i, n := range nodes {
		byID[n.Node.ID] = i
	}
	depthOf = func(i int, seen int) int {
		id := nodes[i].Node.ID
		if d, ok := depth[id]; ok {
			return d
		}
		d := 0
		if seen < len(nodes) {
			for _, p := range nodes[i].Node.Preds {
				if j, ok := byID[p]; ok {
					d = max(d, depthOf(j, seen+1)+1)
				}
			}
		}
		depth[id] = d
		return d
	}
	type pos struct{ x, y int }
	at := make([]pos, len(nodes))
	rows := map[int]int{}
	maxX, maxY := 0, 0
	for i := range nodes {
		d := depthOf(i, 0)
		if nodes[i].Node.Kind == "unknown" && len(nodes[i].Node.Preds) == 0 && i > 0 {
			d = depthOf(i-1, 0) + 1 // steps without a stored shape: in order
			depth[nodes[i].Node.ID] = d
		}
		at[i] = pos{pad + d*(nodeW+gapX), pad + rows[d]*(nodeH+gapY)}
		rows[d]++
		maxX, maxY = max(maxX, at[i].x+nodeW), max(maxY, at[i].y+nodeH)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="dag-svg" role="img" aria-label="graph of run %d" width="%d" height="%d" viewBox="0 0 %d %d">`,
		run.ID, maxX+pad+8, maxY+pad+8, maxX+pad+8, maxY+pad+8)
	b.WriteString(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#868e96"/></marker></defs>`)
	for i, n := range nodes {
		for _, p := range n.Node.Preds {
			j, ok := byID[p]
			if !ok {
				continue
			}
			x1, y1 := at[j].x+nodeW, at[j].y+nodeH/2
			x2, y2 := at[i].x, at[i].y+nodeH/2
			fmt.Fprintf(&b, `<path class="edge" data-from="%s" data-to="%s" d="M %d %d C %d %d, %d %d, %d %d" fill="none" stroke="#868e96" stroke-width="1.5" marker-end="url(#arrow)"/>`,
				esc(p), esc(n.Node.ID), x1, y1, x1+gapX/2, y1, x2-gapX/2, y2, x2-2, y2)
		}
	}
	for i, n := range nodes {
		x, y := at[i].x, at[i].y
		c := stateColours[n.State]
		halted := run.Status == ductwork.RunHalted && run.HaltNode == n.Node.ID
		width, dash := "1.5", ""
		class := "node kind-" + n.Node.Kind + " state-" + n.State
		if halted {
			width, class = "4", class+" halted"
		}
		if n.State == readmodel.StateCancelled || n.Node.Kind == "unknown" {
			dash = ` stroke-dasharray="5 3"`
		}
		style := fmt.Sprintf(`fill="%s" stroke="%s" stroke-width="%s"%s`, c[0], c[1], width, dash)
		fmt.Fprintf(&b, `<a href="?node=%s#executions"><g class="%s" data-node="%s" data-kind="%s" data-state="%s" data-fill="%s"%s>`,
			esc(url.QueryEscape(n.Node.ID)), esc(class), esc(n.Node.ID), esc(n.Node.Kind), esc(n.State), c[0], map[bool]string{true: ` data-halted="true"`}[halted])
		fmt.Fprintf(&b, `<title>%s (%s): %s</title>`, esc(n.Node.ID), esc(n.Node.Kind), esc(n.State))
		b.WriteString(shape(n.Node.Kind, x, y, style))
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-weight="600" fill="#1d2330">%s</text>`, x+nodeW/2, y+22, esc(short(n.Node.ID, 22)))
		fmt.Fprintf(&b, `<text class="counts" x="%d" y="%d" text-anchor="middle" fill="%s">%s</text>`, x+nodeW/2, y+40, c[1], esc(countsLabel(n, halted)))
		b.WriteString(`</g></a>`)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// countsLabel is a node's second line: its kind and state, or for an
// expansion the number of instances in each state ("97 done · 3 failed").
func countsLabel(n readmodel.NodeState, halted bool) string {
	multi := len(n.Instances) > 1 || (len(n.Instances) == 1 && n.Instances[0].Scope != "")
	var parts []string
	if multi {
		for _, s := range []struct {
			status ductwork.StepStatus
			label  string
		}{
			{ductwork.StepCompleted, "done"}, {ductwork.StepRunning, "running"}, {ductwork.StepWaiting, "waiting"}, {ductwork.StepPending, "pending"},
			{ductwork.StepFailed, "failed"}, {ductwork.StepCancelled, "cancelled"},
		} {
			if c := n.Counts[s.status]; c > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", c, s.label))
			}
		}
	} else {
		parts = append(parts, n.Node.Kind+" · "+strings.ReplaceAll(n.State, "-", " "))
	}
	label := strings.Join(parts, " · ")
	if halted {
		label = "HALTED · " + label
	}
	if n.Node.Detached {
		label += " · detached"
	}
	return label
}

// shape draws the outline of a node of kind at (x, y).
func shape(kind string, x, y int, style string) string {
	w, h := nodeW, nodeH
	poly := func(pts ...int) string {
		var s []string
		for i := 0; i < len(pts); i += 2 {
			s = append(s, fmt.Sprintf("%d,%d", pts[i], pts[i+1]))
		}
		return fmt.Sprintf(`<polygon points="%s" %s/>`, strings.Join(s, " "), style)
	}
	switch kind {
	case "start":
		return fmt.Sprintf(`<rect x="%d" y="%d" width="%d" height="%d" rx="%d" %s/>`, x, y, w, h, h/2, style)
	case "expand":
		// A stack: one step, many instances.
		return fmt.Sprintf(`<rect x="%d" y="%d" width="%d" height="%d" rx="4" %s opacity=".45"/><rect x="%d" y="%d" width="%d" height="%d" rx="4" %s opacity=".7"/><rect x="%d" y="%d" width="%d" height="%d" rx="4" %s/>`,
			x+8, y-8, w-8, h, style, x+4, y-4, w-4, h, style, x, y, w-8, h, style)
	case "collapse":
		return poly(x, y, x+w, y+10, x+w, y+h-10, x, y+h)
	case "divide":
		return poly(x+14, y, x+w, y, x+w-14, y+h, x, y+h)
	case "combine":
		return poly(x+14, y, x+w-14, y, x+w, y+h/2, x+w-14, y+h, x+14, y+h, x, y+h/2)
	case "case":
		return poly(x, y, x+w-18, y, x+w, y+h/2, x+w-18, y+h, x, y+h)
	case "converge":
		return poly(x+18, y, x+w, y, x+w, y+h, x+18, y+h, x, y+h/2)
	case "sleep", "await":
		// Rounded ends: a pause on the branch.
		return fmt.Sprintf(`<rect x="%d" y="%d" width="%d" height="%d" rx="%d" %s/>`, x, y, w, h, h/3, style)
	default: // chain, unknown
		return fmt.Sprintf(`<rect x="%d" y="%d" width="%d" height="%d" rx="4" %s/>`, x, y, w, h, style)
	}
}

func esc(s string) string { return html.EscapeString(s) }
