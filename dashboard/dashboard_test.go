package dashboard_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/dashboard"
	"github.com/ductwork-go/ductwork/internal/testdb"
	"github.com/ductwork-go/ductwork/internal/windowtest"
	"github.com/ductwork-go/ductwork/readmodel"
)

// get fetches path and returns the status and body.
func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]{32})"`)

// TestPages renders every page on each backend, with a halted run whose
// error carries markup: the markup is escaped everywhere, the graph is
// drawn from the stored definition, and actions need the CSRF token.
func TestPages(t *testing.T) {
	for _, kind := range windowtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := windowtest.Open(t, kind)
			c := e.Client(t)
			e.Supervise(t, c)
			payload := `<script>alert("` + kind + `")</script>`
			windowtest.Refuse(payload)
			t.Cleanup(func() { windowtest.Heal(payload) })
			id := e.Trigger(t, c, "a", payload)
			nightly, err := ductwork.Schedule(windowtest.Orders, "0 3 * * *", func(time.Time) []string { return nil },
				ductwork.ScheduleName("nightly-<b>"+kind))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.RegisterSchedules(nightly); err != nil {
				t.Fatal(err)
			}
			if err := c.SaveSchedules(t.Context()); err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(http.StripPrefix("/dw", dashboard.New(c, &dashboard.Config{Store: e.Store})))
			t.Cleanup(srv.Close)
			jar, _ := cookiejar.New(nil)
			hc := &http.Client{Jar: jar}
			runURL := srv.URL + "/dw/runs/" + strconv.FormatInt(id, 10)
			for _, path := range []string{"/dw/", "/dw/runs", "/dw/runs?status=halted&error=declined", "/dw/processes", "/dw/definitions", "/dw/runs/" + strconv.FormatInt(id, 10)} {
				code, body := get(t, hc, srv.URL+path)
				if code != http.StatusOK {
					t.Fatalf("GET %s: %d %s", path, code, body)
				}
				if strings.Contains(body, payload) {
					t.Fatalf("GET %s: the error's markup is not escaped", path)
				}
			}
			if _, body := get(t, hc, srv.URL+"/dw/definitions"); !strings.Contains(body, "nightly-&lt;b&gt;"+kind) || !strings.Contains(body, "<code>0 3 * * *</code>") ||
				!strings.Contains(body, "run-once") || !strings.Contains(body, "never") {
				t.Fatalf("the definitions page does not list the schedule:\n%s", body)
			}
			_, body := get(t, hc, runURL)
			for _, want := range []string{`data-node="receive"`, `data-node="charge" data-kind="expand" data-state="failed"`, `data-halted="true"`, `data-node="report"`, "&lt;script&gt;alert(", `href="/dw/runs"`} {
				if !strings.Contains(body, want) {
					t.Fatalf("run page lacks %s", want)
				}
			}
			// The executions of a node, chosen in the graph: the panel lists
			// them with their outcome and (escaped) error.
			testdb.WaitFor(t, 30*time.Second, "both charges to end", func() bool {
				p, err := e.Store.Executions(t.Context(), &readmodel.ExecutionFilter{RunID: id, Node: "charge"})
				return err == nil && len(p.Executions) == 2
			})
			if !strings.Contains(body, `href="?node=charge#executions"`) {
				t.Fatal("the charge node does not link to its executions")
			}
			code, panel := get(t, hc, runURL+"?node=charge")
			if code != http.StatusOK || strings.Count(panel, "<tr data-execution=") != 2 || !strings.Contains(panel, `data-outcome="failed"`) ||
				!strings.Contains(panel, `data-outcome="completed"`) || strings.Contains(panel, payload) || !strings.Contains(panel, "card declined for &lt;script&gt;") {
				t.Fatalf("executions panel of charge: %d\n%s", code, panel)
			}
			if _, panel := get(t, hc, runURL+"?node=report"); !strings.Contains(panel, "No execution of report has ended yet") {
				t.Fatal("the panel of a node that never ran does not say so")
			}
			// The overview's charts count the last hour's executions.
			_, overview := get(t, hc, srv.URL+"/dw/")
			completed := regexp.MustCompile(`class="chart chart-completed"[^>]*data-total="(\d+)"`).FindStringSubmatch(overview)
			failed := regexp.MustCompile(`class="chart chart-failed"[^>]*data-total="(\d+)"`).FindStringSubmatch(overview)
			if completed == nil || failed == nil || completed[1] != "2" || failed[1] != "1" {
				t.Fatalf("overview charts: completed %v, failed %v; want 2 and 1", completed, failed)
			}
			if code, _ := get(t, hc, srv.URL+"/dw/runs/999999"); code != http.StatusNotFound {
				t.Fatalf("unknown run: %d; want 404", code)
			}

			// A POST without the token, or with another one, changes nothing.
			for _, form := range []url.Values{{}, {"csrf": {strings.Repeat("0", 32)}}} {
				resp, err := hc.PostForm(runURL+"/revive", form)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden {
					t.Fatalf("revive with csrf %q: %d; want 403", form.Get("csrf"), resp.StatusCode)
				}
			}
			if r, _ := e.Store.Run(t.Context(), id); r.Status != backend.RunHalted {
				t.Fatalf("a refused revive changed the run to %s", r.Status)
			}
			m := csrfField.FindStringSubmatch(body)
			if m == nil {
				t.Fatal("no CSRF field on the run page")
			}
			// GET on an action is not routed.
			if code, _ := get(t, hc, runURL+"/revive"); code != http.StatusMethodNotAllowed {
				t.Fatalf("GET revive: %d; want 405", code)
			}
			resp, err := hc.PostForm(runURL+"/cancel", url.Values{"csrf": {m[1]}, "reason": {"<b>no</b>"}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			r, _ := e.Store.Run(t.Context(), id)
			if resp.StatusCode != http.StatusOK || r.Status != backend.RunCancelled || r.Error != "<b>no</b>" {
				t.Fatalf("cancel with the token: %d, run %+v", resp.StatusCode, r)
			}
			if _, body := get(t, hc, runURL); strings.Contains(body, "<b>no</b>") {
				t.Fatal("the cancel reason is not escaped")
			}
		})
	}
}

// TestReadOnlyAndAuthorize: read-only mode shows no actions and refuses
// them; the authorize hook sees every request and its refusal is a 403.
func TestReadOnlyAndAuthorize(t *testing.T) {
	e := windowtest.Open(t, "sqlite")
	c := e.Client(t)
	e.Supervise(t, c)
	bad := "ro-item"
	windowtest.Refuse(bad)
	t.Cleanup(func() { windowtest.Heal(bad) })
	id := strconv.FormatInt(e.Trigger(t, c, bad), 10)
	var seen []string
	h := dashboard.New(c, &dashboard.Config{Store: e.Store, ReadOnly: true, AuthorizeFunc: func(r *http.Request, action string) error {
		seen = append(seen, action)
		if r.Header.Get("X-User") == "" {
			return errors.New("who are you?")
		}
		return nil
	}})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if code, body := get(t, srv.Client(), srv.URL+"/runs/"+id); code != http.StatusForbidden || !strings.Contains(body, "who are you?") {
		t.Fatalf("unauthorized GET: %d %s", code, body)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/runs/"+id, nil)
	req.Header.Set("X-User", "ann")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Contains(string(body), `id="revive"`) || !strings.Contains(string(body), "read-only") {
		t.Fatalf("read-only run page: %d, revive button shown: %t", resp.StatusCode, strings.Contains(string(body), `id="revive"`))
	}
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/runs/"+id+"/revive", strings.NewReader("csrf=x"))
	req.Header.Set("X-User", "ann")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("revive in read-only mode: %d; want 403", resp.StatusCode)
	}
	if got := strings.Join(seen, ","); got != "view,view,revive" {
		t.Fatalf("authorize saw %s", got)
	}
}
