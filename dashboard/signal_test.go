package dashboard_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/dashboard"
	"github.com/ductwork-go/ductwork/internal/testdb"
	"github.com/ductwork-go/ductwork/internal/windowtest"
)

// approvalRun starts a run of windowtest.Approvals and waits until it waits
// for its signal.
func approvalRun(t *testing.T, e *windowtest.Env) (*ductwork.Client, *ductwork.Run[string]) {
	t.Helper()
	c := e.Client(t)
	if err := c.Register(windowtest.Approvals); err != nil {
		t.Fatal(err)
	}
	e.Supervise(t, c)
	run, err := ductwork.Trigger(t.Context(), c, windowtest.Approvals, "invoice")
	if err != nil {
		t.Fatal(err)
	}
	testdb.WaitFor(t, 30*time.Second, "the run to wait for its signal", func() bool {
		r, err := e.Store.Run(t.Context(), run.ID)
		return err == nil && r.Status == backend.RunWaiting
	})
	return c, run
}

// TestSignalAction: the run page of a run that awaits a signal has a form
// to send it; the POST needs the CSRF token, refuses a payload that is not
// JSON, an unknown signal and a payload of the wrong type (400, nothing
// sent), and with a good one the run goes on to complete. On each backend.
func TestSignalAction(t *testing.T) {
	for _, kind := range windowtest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := windowtest.Open(t, kind)
			c, run := approvalRun(t, e)
			var (
				mu      sync.Mutex
				actions []string
			)
			srv := httptest.NewServer(http.StripPrefix("/dw", dashboard.New(c, &dashboard.Config{Store: e.Store,
				AuthorizeFunc: func(r *http.Request, action string) error {
					mu.Lock()
					defer mu.Unlock()
					actions = append(actions, action)
					return nil
				}})))
			t.Cleanup(srv.Close)
			jar, _ := cookiejar.New(nil)
			hc := &http.Client{Jar: jar}
			runURL := srv.URL + "/dw/runs/" + strconv.FormatInt(run.ID, 10)
			_, body := get(t, hc, runURL)
			for _, want := range []string{`action="/dw/runs/` + strconv.FormatInt(run.ID, 10) + `/signal"`, `<option value="approval">approval (windowtest.Decision)</option>`, `data-confirm="Send this signal`} {
				if !strings.Contains(body, want) {
					t.Fatalf("run page lacks %s", want)
				}
			}
			m := csrfField.FindStringSubmatch(body)
			if m == nil {
				t.Fatal("no CSRF field")
			}
			post := func(form url.Values) (int, string) {
				t.Helper()
				resp, err := hc.PostForm(runURL+"/signal", form)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var sb strings.Builder
				buf := make([]byte, 4096)
				n, _ := resp.Body.Read(buf)
				sb.Write(buf[:n])
				return resp.StatusCode, sb.String()
			}
			for _, bad := range []struct {
				form url.Values
				code int
				want string
			}{
				{url.Values{"signal": {"approval"}, "payload": {`{"ok": true}`}}, http.StatusForbidden, "CSRF"},
				{url.Values{"csrf": {m[1]}, "signal": {"approval"}, "payload": {`{ok}`}}, http.StatusBadRequest, "not JSON"},
				{url.Values{"csrf": {m[1]}, "signal": {"nope"}, "payload": {`{}`}}, http.StatusBadRequest, "awaits no signal"},
				{url.Values{"csrf": {m[1]}, "signal": {"approval"}, "payload": {`{"ok": "yes"}`}}, http.StatusBadRequest, "not valid"},
				{url.Values{"csrf": {m[1]}, "signal": {"approval"}, "payload": {`{}`}, "key": {"k"}, "all": {"1"}}, http.StatusBadRequest, "exclude each other"},
			} {
				if code, msg := post(bad.form); code != bad.code || !strings.Contains(msg, bad.want) {
					t.Fatalf("POST %v: %d %q; want %d and %q", bad.form, code, msg, bad.code, bad.want)
				}
			}
			if r, _ := e.Store.Run(t.Context(), run.ID); r.Status != backend.RunWaiting {
				t.Fatalf("a refused signal changed the run to %s", r.Status)
			}
			if code, _ := post(url.Values{"csrf": {m[1]}, "signal": {"approval"}, "payload": {`{"ok": true, "by": "<b>ann</b>"}`}}); code != http.StatusOK {
				t.Fatalf("POST signal: %d", code)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			if out, err := run.Wait(ctx); err != nil || out != "invoice approved by <b>ann</b>" {
				t.Fatalf("run after the signal: %q, %v", out, err)
			}
			if _, body := get(t, hc, runURL); strings.Contains(body, `/signal"`) || strings.Contains(body, "<b>ann</b>") {
				t.Fatal("a completed run still offers the signal form, or the output is not escaped")
			}
			mu.Lock()
			defer mu.Unlock()
			found := false
			for _, a := range actions {
				found = found || a == dashboard.ActionSignal
			}
			if !found {
				t.Fatalf("the authorize hook saw %v; want a %q action", actions, dashboard.ActionSignal)
			}
		})
	}
}

// TestSignalReadOnly: a read-only dashboard shows no signal form and
// refuses the POST.
func TestSignalReadOnly(t *testing.T) {
	e := windowtest.Open(t, "sqlite")
	c, run := approvalRun(t, e)
	srv := httptest.NewServer(dashboard.New(c, &dashboard.Config{Store: e.Store, ReadOnly: true}))
	t.Cleanup(srv.Close)
	id := strconv.FormatInt(run.ID, 10)
	if _, body := get(t, srv.Client(), srv.URL+"/runs/"+id); strings.Contains(body, `/signal"`) {
		t.Fatal("read-only run page shows the signal form")
	}
	resp, err := srv.Client().PostForm(srv.URL+"/runs/"+id+"/signal", url.Values{"csrf": {"x"}, "signal": {"approval"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("signal in read-only mode: %d; want 403", resp.StatusCode)
	}
	if r, _ := e.Store.Run(t.Context(), run.ID); r.Status != backend.RunWaiting {
		t.Fatalf("run is %s; want still waiting", r.Status)
	}
}
