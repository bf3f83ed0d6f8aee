package dashboard

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ductwork-go/ductwork"
	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/readmodel"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Actions passed to Config.AuthorizeFunc.
const (
	ActionView   = "view"
	ActionRevive = "revive"
	ActionCancel = "cancel"
	ActionSignal = "signal"
)

// Config configures the dashboard. Store is required.
type Config struct {
	// Store reads the runs, steps, processes and definitions.
	Store *readmodel.Store
	// ReadOnly removes the actions: their forms are not shown and their
	// requests are refused (403).
	ReadOnly bool
	// AuthorizeFunc, if set, is called for every request with the action it
	// asks for (ActionView, ActionRevive, ActionCancel, ActionSignal); a non-nil error
	// refuses it with 403 and the error's text.
	AuthorizeFunc func(r *http.Request, action string) error
	// PollInterval is how often pages refresh their live parts; default
	// 2s, negative disables polling.
	PollInterval time.Duration
	// MaxPayloadBytes truncates step inputs and outputs shown; default 16 KiB.
	MaxPayloadBytes int
	// Logger receives errors of requests; default slog.Default().
	Logger *slog.Logger
}

type handler struct {
	client *ductwork.Client
	cfg    Config
	pages  map[string]*template.Template
	mux    *http.ServeMux
}

// New returns the dashboard for client (used for actions) reading
// cfg.Store. Mount it under any prefix with http.StripPrefix; its links are
// relative to the mount point. With a nil client or Store every request
// fails with 500 and says why.
func New(client *ductwork.Client, cfg *Config) http.Handler {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.PollInterval == 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.MaxPayloadBytes <= 0 {
		c.MaxPayloadBytes = 16 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if client == nil || c.Store == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "dashboard: New needs a client and Config.Store", http.StatusInternalServerError)
		})
	}
	h := &handler{client: client, cfg: c, pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	funcs := template.FuncMap{
		"short":        short,
		"pretty":       func(b []byte) string { return pretty(b, c.MaxPayloadBytes) },
		"duration":     func(s readmodel.Step, now time.Time) string { return fmtDuration(s.Duration(now)) },
		"execDuration": func(e readmodel.Execution) string { return fmtDuration(e.Duration()) },
		"nodeURL": func(node string) string {
			return "?" + url.Values{"node": {node}}.Encode() + "#executions"
		},
		"table": func(base string, runs []readmodel.Run) map[string]any {
			return map[string]any{"Base": base, "Runs": runs}
		},
	}
	for _, page := range []string{"overview", "runs", "run", "processes", "definitions"} {
		h.pages[page] = template.Must(template.New(page).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/runtable.html", "templates/"+page+".html"))
	}
	assets, _ := fs.Sub(assetFS, "assets")
	h.mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assets)))
	h.mux.HandleFunc("GET /{$}", h.overview)
	h.mux.HandleFunc("GET /runs", h.runs)
	h.mux.HandleFunc("GET /runs/{id}", h.run)
	h.mux.HandleFunc("POST /runs/{id}/revive", h.revive)
	h.mux.HandleFunc("POST /runs/{id}/cancel", h.cancel)
	h.mux.HandleFunc("POST /runs/{id}/signal", h.signal)
	h.mux.HandleFunc("GET /processes", h.processes)
	h.mux.HandleFunc("GET /definitions", h.definitions)
	return h
}

// ServeHTTP authorizes the request, sets the security headers and routes it.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	action := ActionView
	if r.Method == http.MethodPost {
		switch {
		case strings.HasSuffix(r.URL.Path, "/revive"):
			action = ActionRevive
		case strings.HasSuffix(r.URL.Path, "/cancel"):
			action = ActionCancel
		case strings.HasSuffix(r.URL.Path, "/signal"):
			action = ActionSignal
		}
	}
	if f := h.cfg.AuthorizeFunc; f != nil {
		if err := f(r, action); err != nil {
			http.Error(w, "forbidden: "+err.Error(), http.StatusForbidden)
			return
		}
	}
	h.mux.ServeHTTP(w, r)
}

// base is the mount point of the request: the part of the requested path
// that http.StripPrefix (or another router) removed.
func base(r *http.Request) string {
	full := r.URL.Path
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
		full = u.Path
	}
	b := strings.TrimSuffix(full, r.URL.Path)
	return strings.TrimSuffix(b, "/")
}

// page is what every template receives.
type page struct {
	Title    string
	Base     string
	ReadOnly bool
	PollMS   int64
	CSRF     string
	Data     any
}

func (h *handler) render(w http.ResponseWriter, r *http.Request, name, title string, data any) {
	p := page{Title: title, Base: base(r), ReadOnly: h.cfg.ReadOnly, Data: data, CSRF: h.csrfToken(w, r)}
	if h.cfg.PollInterval > 0 {
		p.PollMS = h.cfg.PollInterval.Milliseconds()
	}
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = buf.WriteTo(w)
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, readmodel.ErrNotFound), errors.Is(err, backend.ErrRunNotFound):
		status = http.StatusNotFound
	case errors.Is(err, backend.ErrRunState):
		status = http.StatusConflict
	case errors.Is(err, ductwork.ErrUnknownSignal), errors.Is(err, ductwork.ErrSignalPayload):
		status = http.StatusBadRequest
	default:
		h.cfg.Logger.ErrorContext(r.Context(), "ductwork dashboard: request failed", slog.String("path", r.URL.Path), slog.Any("error", err))
	}
	http.Error(w, err.Error(), status)
}

const csrfCookie = "ductwork_csrf"

// csrfToken returns the request's token, setting a new one in a cookie when
// it has none. Actions must post the same value (double submit): another
// site can make the browser send the cookie but cannot read it.
func (h *handler) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 32 {
		return c.Value
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: tok, Path: base(r) + "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: tok})
	return tok
}

// checkPost refuses an action in read-only mode, without the cookie's
// token, or from another origin.
func (h *handler) checkPost(w http.ResponseWriter, r *http.Request) bool {
	if h.cfg.ReadOnly {
		http.Error(w, "forbidden: the dashboard is read-only", http.StatusForbidden)
		return false
	}
	c, err := r.Cookie(csrfCookie)
	form := r.PostFormValue("csrf")
	if err != nil || form == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(form)) != 1 {
		http.Error(w, "forbidden: missing or wrong CSRF token (reload the page)", http.StatusForbidden)
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			http.Error(w, "forbidden: cross-origin request", http.StatusForbidden)
			return false
		}
	}
	return true
}

func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("run ID %q: %w", r.PathValue("id"), readmodel.ErrNotFound)
	}
	return id, nil
}

func (h *handler) revive(w http.ResponseWriter, r *http.Request) {
	if !h.checkPost(w, r) {
		return
	}
	id, err := pathID(r)
	if err == nil {
		err = h.client.Revive(r.Context(), id)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	http.Redirect(w, r, base(r)+"/runs/"+strconv.FormatInt(id, 10), http.StatusSeeOther)
}

func (h *handler) cancel(w http.ResponseWriter, r *http.Request) {
	if !h.checkPost(w, r) {
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		http.Error(w, "a reason is required to cancel a run", http.StatusBadRequest)
		return
	}
	id, err := pathID(r)
	if err == nil {
		err = h.client.Cancel(r.Context(), id, reason)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	http.Redirect(w, r, base(r)+"/runs/"+strconv.FormatInt(id, 10), http.StatusSeeOther)
}

// signal sends a named signal with a JSON payload to the run (the form of
// the run page): Client.SendSignal, checked against the run's definition.
func (h *handler) signal(w http.ResponseWriter, r *http.Request) {
	if !h.checkPost(w, r) {
		return
	}
	name := strings.TrimSpace(r.PostFormValue("signal"))
	payload := strings.TrimSpace(r.PostFormValue("payload"))
	if payload == "" {
		payload = "null"
	}
	scope, key, all := strings.TrimSpace(r.PostFormValue("scope")), strings.TrimSpace(r.PostFormValue("key")), r.PostFormValue("all") != ""
	switch {
	case name == "":
		http.Error(w, "a signal name is required", http.StatusBadRequest)
		return
	case !json.Valid([]byte(payload)):
		http.Error(w, "the payload is not JSON", http.StatusBadRequest)
		return
	case btoi(scope != "")+btoi(key != "")+btoi(all) > 1:
		http.Error(w, "scope, key and all exclude each other", http.StatusBadRequest)
		return
	}
	var opts []ductwork.SendOption
	switch {
	case scope != "":
		opts = append(opts, ductwork.ToScope(scope))
	case key != "":
		opts = append(opts, ductwork.ToKey(key))
	case all:
		opts = append(opts, ductwork.ToAll())
	}
	id, err := pathID(r)
	if err == nil {
		_, err = h.client.SendSignal(r.Context(), id, name, []byte(payload), opts...)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	http.Redirect(w, r, base(r)+"/runs/"+strconv.FormatInt(id, 10), http.StatusSeeOther)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// short cuts s to n runes on one line.
func short(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// pretty indents a JSON payload, truncated past limit bytes.
func pretty(b []byte, limit int) string {
	var buf bytes.Buffer
	if json.Indent(&buf, b, "", "  ") != nil {
		buf.Reset()
		buf.Write(b)
	}
	if buf.Len() > limit {
		return buf.String()[:limit] + fmt.Sprintf("\n… (%d bytes in all)", buf.Len())
	}
	return buf.String()
}

func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

// ctx bounds the database reads of one request.
func ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}
