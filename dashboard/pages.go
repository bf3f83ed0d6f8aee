package dashboard

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/readmodel"
)

// executionsPage is how many executions the panel of a node shows at once.
const executionsPage = 50

var statusOptions = []ductwork.RunStatus{ductwork.RunRunning, ductwork.RunWaiting, ductwork.RunHalted, ductwork.RunCompleted, ductwork.RunCancelled}

func (h *handler) overview(w http.ResponseWriter, r *http.Request) {
	c, cancel := ctx(r)
	defer cancel()
	st := h.cfg.Store
	counts, err := st.Counts(c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	data := struct {
		Counts                 []readmodel.StatusCount
		Total, Halted, Running int64
		Live, Stranded         int
		Halts                  []readmodel.Run
		Activity               *readmodel.Activity
		Completed, Failed      int
		Throughput, Failures   template.HTML
	}{Counts: counts}
	for _, sc := range counts {
		data.Total += sc.Runs
		switch sc.Status {
		case ductwork.RunHalted:
			data.Halted += sc.Runs
		case ductwork.RunRunning, ductwork.RunWaiting:
			data.Running += sc.Runs
		}
	}
	ps, err := st.Processes(c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	for _, p := range ps {
		if p.Live {
			data.Live++
		}
	}
	defs, err := st.Definitions(c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	for _, d := range defs {
		if d.Stranded {
			data.Stranded++
		}
	}
	halts, err := st.Runs(c, &readmodel.RunFilter{Statuses: []ductwork.RunStatus{ductwork.RunHalted}, Limit: 10})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	data.Halts = halts.Runs
	act, err := st.Activity(c, time.Hour, 60)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	data.Activity = act
	data.Completed, data.Failed = act.Totals()
	data.Throughput = template.HTML(drawChart(act, "completed", "#2b8a3e"))
	data.Failures = template.HTML(drawChart(act, "failed", "#c92a2a"))
	h.render(w, r, "overview", "Overview", data)
}

func (h *handler) runs(w http.ResponseWriter, r *http.Request) {
	c, cancel := ctx(r)
	defer cancel()
	q := r.URL.Query()
	f := readmodel.RunFilter{Pipeline: q.Get("pipeline"), ErrorContains: q.Get("error")}
	status := q.Get("status")
	if status != "" {
		f.Statuses = []ductwork.RunStatus{ductwork.RunStatus(status)}
	}
	f.Before, _ = strconv.ParseInt(q.Get("before"), 10, 64)
	f.Limit, _ = strconv.Atoi(q.Get("limit"))
	since := q.Get("since")
	if since != "" {
		now, err := h.cfg.Store.Now(c)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if d, err := time.ParseDuration(since); err == nil {
			f.From = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339, since); err == nil {
			f.From = t
		} else {
			http.Error(w, "since: want a duration (2h) or an RFC 3339 time", http.StatusBadRequest)
			return
		}
	}
	p, err := h.cfg.Store.Runs(c, &f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	next := url.Values{}
	for k, v := range q {
		next[k] = v
	}
	next.Set("before", strconv.FormatInt(p.Next, 10))
	h.render(w, r, "runs", "Runs", map[string]any{
		"Filter": f, "Status": status, "Since": since, "Page": p, "StatusOptions": statusOptions,
		"NextURL": base(r) + "/runs?" + next.Encode(),
	})
}

func (h *handler) run(w http.ResponseWriter, r *http.Request) {
	c, cancel := ctx(r)
	defer cancel()
	id, err := pathID(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	st := h.cfg.Store
	run, err := st.Run(c, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	shape, err := st.Shape(c, backend.DefinitionRef{Pipeline: run.Pipeline, Fingerprint: run.Fingerprint})
	if err != nil && !errors.Is(err, readmodel.ErrNotFound) {
		h.fail(w, r, err)
		return
	}
	steps, err := st.Steps(c, id, 0)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	now, err := st.Now(c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	nodes := readmodel.Tree(shape, steps)
	done, total := 0, 0
	for _, n := range nodes {
		total += n.Total()
		done += n.Counts[backend.JobCompleted]
	}
	data := map[string]any{
		"Run": run, "Nodes": nodes, "Now": now, "Done": done, "Total": total,
		"ShapeStored": shape != nil, "SVG": template.HTML(drawDAG(nodes, run)),
	}
	if shape != nil && (run.Status == backend.RunRunning || run.Status == backend.RunWaiting || run.Status == backend.RunHalted) {
		data["Signals"] = shape.Signals
	}
	// A node chosen (clicked in the graph): its executions, oldest first,
	// a page at a time, and its instances running now.
	if node := r.URL.Query().Get("node"); node != "" {
		after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
		execs, err := st.Executions(c, &readmodel.ExecutionFilter{RunID: id, Node: node, After: max(after, 0), Limit: executionsPage})
		if err != nil {
			h.fail(w, r, err)
			return
		}
		var running []readmodel.Step
		for _, n := range nodes {
			if n.Node.ID != node {
				continue
			}
			for _, in := range n.Instances {
				if in.Status == backend.JobRunning {
					running = append(running, in)
				}
			}
		}
		data["Node"], data["Executions"], data["RunningNow"] = node, execs, running
		if execs.Next != 0 {
			data["MoreURL"] = base(r) + "/runs/" + strconv.FormatInt(id, 10) + "?" +
				url.Values{"node": {node}, "after": {strconv.FormatInt(execs.Next, 10)}}.Encode() + "#executions"
		}
	}
	h.render(w, r, "run", "Run "+strconv.FormatInt(id, 10), data)
}

func (h *handler) processes(w http.ResponseWriter, r *http.Request) {
	c, cancel := ctx(r)
	defer cancel()
	ps, err := h.cfg.Store.Processes(c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	for i := range ps {
		ps[i].HeartbeatAge = ps[i].HeartbeatAge.Round(time.Millisecond)
	}
	h.render(w, r, "processes", "Processes", ps)
}

func (h *handler) definitions(w http.ResponseWriter, r *http.Request) {
	c, cancel := ctx(r)
	defer cancel()
	defs, err := h.cfg.Store.Definitions(c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	schedules, err := h.cfg.Store.Schedules(c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.render(w, r, "definitions", "Definitions", definitionsPage{Definitions: defs, Schedules: schedules})
}

// definitionsPage is what the definitions page shows: the stored versions
// and the schedules that trigger them.
type definitionsPage struct {
	Definitions []readmodel.Definition
	Schedules   []readmodel.Schedule
}
