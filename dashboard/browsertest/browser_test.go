package browsertest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/dashboard"
	"github.com/ductwork-go/ductwork/internal/testdb"
	"github.com/ductwork-go/ductwork/internal/windowtest"
	"github.com/ductwork-go/ductwork/readmodel"
)

// chromium returns the browser binary, or skips t naming what is missing.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("browser tests need Chromium: /usr/bin/chromium not found (apt-get install -y chromium)")
	return ""
}

// browser starts a headless Chromium with a fresh profile; confirm dialogs
// are accepted.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start Chromium: %v", err)
	}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return ctx
}

// within bounds one browser step.
func within(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(within(t, ctx), chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// waitJS waits until js is true in the page. Errors of an evaluation that
// met a navigation (a form posted, a redirect) are retried.
func waitJS(t *testing.T, ctx context.Context, what, js string) {
	t.Helper()
	testdb.WaitFor(t, 30*time.Second, what+" ("+js+")", func() bool {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ok, err := chromedp.Run(c, chromedp.Evaluate[bool](js))
		return err == nil && ok
	})
}

const xss = `<script>window.__xss=1</script><img src=x onerror="window.__xss=2">`

// TestBrowser drives the dashboard in Chromium over a SQLite database with a
// running supervisor: the runs page lists a halted run, its graph has the
// expected nodes and colours, revive completes it, cancel works, an error
// carrying markup stays text, and all of it works under a prefix.
func TestBrowser(t *testing.T) {
	ctx := browser(t)
	e := windowtest.Open(t, "sqlite")
	c := e.Client(t)
	if err := c.Register(windowtest.Approvals); err != nil {
		t.Fatal(err)
	}
	e.Supervise(t, c)
	mux := http.NewServeMux()
	h := dashboard.New(c, &dashboard.Config{Store: e.Store, PollInterval: 200 * time.Millisecond})
	mux.Handle("/", h)
	mux.Handle("/ops/", http.StripPrefix("/ops", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	windowtest.Refuse(xss)
	t.Cleanup(func() { windowtest.Heal(xss) })
	for range 3 {
		e.Trigger(t, c, "a", "b", "c")
	}
	halted := e.Trigger(t, c, "a", xss, "c")
	id := strconv.FormatInt(halted, 10)

	t.Run("RunsPageListsHaltedRun", func(t *testing.T) {
		if err := chromedp.Do(within(t, ctx), chromedp.Navigate(srv.URL+"/runs?status=halted")); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the halted run's row", `!!document.querySelector('tr[data-run="`+id+`"] .s-halted')`)
		if n := eval[int](t, ctx, `document.querySelectorAll('table.runs tr[data-run]').length`); n != 1 {
			t.Fatalf("halted filter lists %d runs; want 1", n)
		}
	})

	t.Run("DAGNodesAndColours", func(t *testing.T) {
		if err := chromedp.Do(within(t, ctx), chromedp.Navigate(srv.URL+"/runs/"+id)); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the graph", `document.querySelectorAll('svg.dag-svg g[data-node]').length === 3`)
		type node struct {
			Node, Kind, State, Fill, Counts string
			Halted                          bool
		}
		nodes := eval[[]node](t, ctx, `[...document.querySelectorAll('svg.dag-svg g[data-node]')].map(g => ({
			Node: g.dataset.node, Kind: g.dataset.kind, State: g.dataset.state,
			Fill: g.querySelector('rect,polygon').getAttribute('fill'), Counts: g.querySelector('text.counts').textContent,
			Halted: g.dataset.halted === 'true'}))`)
		want := []node{
			{"receive", "start", "completed", "#d3f9d8", "start · completed", false},
			{"charge", "expand", "failed", "#ffe3e3", "HALTED · 2 done · 1 failed", true},
			{"report", "collapse", "not-reached", "#f8f9fa", "collapse · not reached", false},
		}
		if len(nodes) != len(want) {
			t.Fatalf("nodes %+v", nodes)
		}
		for i := range want {
			if nodes[i] != want[i] {
				t.Fatalf("node %d: %+v; want %+v", i, nodes[i], want[i])
			}
		}
		if n := eval[int](t, ctx, `document.querySelectorAll('svg.dag-svg path.edge').length`); n != 2 {
			t.Fatalf("%d edges; want 2", n)
		}
	})

	t.Run("XSSPayloadStaysText", func(t *testing.T) {
		if v := eval[bool](t, ctx, `window.__xss === undefined`); !v {
			t.Fatal("the payload in the step error ran as script")
		}
		if n := eval[int](t, ctx, `document.querySelectorAll('main script, main img').length`); n != 0 {
			t.Fatalf("the payload made %d elements", n)
		}
		if !eval[bool](t, ctx, `document.querySelector('pre.run-error').textContent.includes('<script>window.__xss=1</script>')`) {
			t.Fatal("the error is not shown as text")
		}
	})

	t.Run("NodeExecutionsPanel", func(t *testing.T) {
		testdb.WaitFor(t, 30*time.Second, "the three charges to end", func() bool {
			p, err := e.Store.Executions(t.Context(), &readmodel.ExecutionFilter{RunID: halted, Node: "charge"})
			return err == nil && len(p.Executions) == 3
		})
		if err := chromedp.Do(within(t, ctx), chromedp.Navigate(srv.URL+"/runs/"+id)); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the graph", `!!document.querySelector('g[data-node="charge"]')`)
		if err := chromedp.Do(within(t, ctx), chromedp.Click(chromedp.CSS(`g[data-node="charge"]`))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the executions panel of charge", `document.querySelectorAll('#executions[data-node="charge"] tr[data-execution]').length === 3`)
		if q := eval[string](t, ctx, `location.search`); q != "?node=charge" {
			t.Fatalf("after the click at %q; want ?node=charge", q)
		}
		type row struct{ Step, Attempt, Process, Started, Ended, Outcome, Error string }
		rows := eval[[]row](t, ctx, `[...document.querySelectorAll('#executions tr[data-execution]')].map(tr => {
			const td = tr.querySelectorAll('td');
			return {Step: td[1].textContent, Attempt: td[2].textContent, Process: td[4].textContent, Started: td[5].textContent,
				Ended: td[6].textContent, Outcome: td[8].textContent.trim(), Error: td[9].textContent};
		}).sort((a, b) => a.Step.localeCompare(b.Step))`)
		for i, r := range rows {
			if r.Step != "charge["+strconv.Itoa(i)+"]" || r.Attempt != "1" || r.Process != "window-sqlite" || r.Started == "" || r.Ended == "" {
				t.Errorf("execution row %d: %+v", i, r)
			}
			want := "completed"
			if i == 1 {
				want = "failed"
			}
			if r.Outcome != want {
				t.Errorf("charge[%d] outcome %q; want %q", i, r.Outcome, want)
			}
		}
		if !strings.Contains(rows[1].Error, `card declined for <script>window.__xss=1</script>`) {
			t.Errorf("the failed execution's error is not shown as text: %q", rows[1].Error)
		}
		if v := eval[bool](t, ctx, `window.__xss === undefined && document.querySelectorAll('#executions script, #executions img').length === 0`); !v {
			t.Fatal("the payload in the execution's error ran or made elements")
		}
	})

	t.Run("PanicStackInPanel", func(t *testing.T) {
		boom := "boom-browser"
		windowtest.Explode(boom)
		t.Cleanup(func() { windowtest.Heal(boom) })
		pid := strconv.FormatInt(e.Trigger(t, c, boom), 10)
		if err := chromedp.Do(within(t, ctx), chromedp.Navigate(srv.URL+"/runs/"+pid+"?node=charge")); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the failed execution", `!!document.querySelector('#executions tr[data-outcome="failed"] details.exec-stack')`)
		if err := chromedp.Do(within(t, ctx), chromedp.Click(chromedp.CSS(`#executions tr[data-outcome="failed"] details.exec-stack summary`))); err != nil {
			t.Fatal(err)
		}
		stack := eval[string](t, ctx, `document.querySelector('#executions details.exec-stack[open] pre').textContent`)
		if !strings.Contains(stack, "goroutine") || !strings.Contains(eval[string](t, ctx, `document.querySelector('#executions tr[data-outcome="failed"] td.exec-error').textContent`), "charge exploded on "+boom) {
			t.Fatalf("the panic's stack and message are not in the panel: %q", stack)
		}
	})

	t.Run("OverviewCharts", func(t *testing.T) {
		if err := chromedp.Do(within(t, ctx), chromedp.Navigate(srv.URL+"/")); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the charts", `!!document.querySelector('#throughput svg.chart-completed') && !!document.querySelector('#failures svg.chart-failed')`)
		bars := eval[int](t, ctx, `document.querySelectorAll('#throughput rect.bar').length`)
		sum := eval[int](t, ctx, `[...document.querySelectorAll('#throughput rect.bar')].reduce((s, r) => s + +r.dataset.value, 0)`)
		failed := eval[int](t, ctx, `[...document.querySelectorAll('#failures rect.bar')].reduce((s, r) => s + +r.dataset.value, 0)`)
		if bars != 60 || sum < 10 || failed < 2 {
			t.Fatalf("charts: %d bars, %d completed, %d failed; want 60 bars, at least 10 completed and 2 failed", bars, sum, failed)
		}
	})

	t.Run("ReviveCompletes", func(t *testing.T) {
		windowtest.Heal(xss)
		if err := chromedp.Do(within(t, ctx), chromedp.Navigate(srv.URL+"/runs/"+id)); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(within(t, ctx), chromedp.Click(chromedp.CSS("#revive"))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the run to show completed", `(document.getElementById('run-status')||{}).textContent === 'completed'`)
		waitJS(t, ctx, "the report node to turn green", `document.querySelector('g[data-node="report"]').dataset.state === 'completed'`)
	})

	t.Run("SendSignalConfirmed", func(t *testing.T) {
		run, err := ductwork.Trigger(t.Context(), c, windowtest.Approvals, "invoice-9")
		if err != nil {
			t.Fatal(err)
		}
		testdb.WaitFor(t, 30*time.Second, "the run to wait for its signal", func() bool {
			r, err := e.Store.Run(t.Context(), run.ID)
			return err == nil && r.Status == backend.RunWaiting
		})
		if err := chromedp.Do(within(t, ctx), chromedp.Navigate(srv.URL+"/ops/runs/"+strconv.FormatInt(run.ID, 10))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the signal form", `!!document.querySelector('form.send-signal #send-signal')`)
		if err := chromedp.Do(within(t, ctx), chromedp.SendKeys(chromedp.CSS("#signal-payload"), `{"ok": true, "by": "bob"}`),
			chromedp.Click(chromedp.CSS("#send-signal"))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the run to show completed", `(document.getElementById('run-status')||{}).textContent === 'completed'`)
		wctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if out, err := run.Wait(wctx); err != nil || out != "invoice-9 approved by bob" {
			t.Fatalf("run after the signal: %q, %v", out, err)
		}
		if p := eval[string](t, ctx, `location.pathname`); p != "/ops/runs/"+strconv.FormatInt(run.ID, 10) {
			t.Fatalf("after sending at %s", p)
		}
	})

	t.Run("CancelUnderPrefix", func(t *testing.T) {
		tr, err := e.Backend.Trigger(t.Context(), &backend.TriggerParams{Pipeline: "orders", Fingerprint: "elsewhere", First: backend.NewJob{NodeID: "receive"}})
		if err != nil {
			t.Fatal(err)
		}
		cid := strconv.FormatInt(tr.RunID, 10)
		if err := chromedp.Do(within(t, ctx), chromedp.Navigate(srv.URL+"/ops/runs/"+cid)); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the stylesheet under the prefix", `getComputedStyle(document.querySelector('header')).backgroundColor === 'rgb(29, 35, 48)'`)
		if href := eval[string](t, ctx, `document.querySelector('header a[href$="/runs"]').getAttribute('href')`); href != "/ops/runs" {
			t.Fatalf("runs link %q; want /ops/runs", href)
		}
		if err := chromedp.Do(within(t, ctx), chromedp.SendKeys(chromedp.CSS("#cancel-reason"), "duplicate order"), chromedp.Click(chromedp.CSS("#cancel"))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the run to show cancelled", `(document.getElementById('run-status')||{}).textContent === 'cancelled'`)
		if p := eval[string](t, ctx, `location.pathname`); p != "/ops/runs/"+cid {
			t.Fatalf("after cancel at %s; want /ops/runs/%s", p, cid)
		}
		r, err := e.Store.Run(t.Context(), tr.RunID)
		if err != nil || r.Status != backend.RunCancelled || r.Error != "duplicate order" {
			t.Fatalf("run after cancel: %+v, %v", r, err)
		}
	})

	// Screenshots for the README, from this directory:
	// DUCTWORK_SCREENSHOTS=1 go test -run TestBrowser .
	if os.Getenv("DUCTWORK_SCREENSHOTS") != "" {
		bad := "order-17"
		windowtest.Refuse(bad)
		shot := e.Trigger(t, c, "order-11", "order-12", bad, "order-13", "order-14")
		windowtest.Heal(bad)
		for name, path := range map[string]string{"dashboard-overview.png": "/", "dashboard-run.png": "/runs/" + strconv.FormatInt(shot, 10) + "?node=charge"} {
			if err := chromedp.Do(within(t, ctx), chromedp.Navigate(srv.URL+path)); err != nil {
				t.Fatal(err)
			}
			png, err := chromedp.Run(within(t, ctx), chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join("..", "..", "docs", name), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
