package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ductwork-go/ductwork/dashboard"
)

func cmdServe(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("serve")
	addr := fs.String("addr", "127.0.0.1:8080", "HOST:PORT to listen on")
	token := fs.String("token", "", "require this token (Authorization: Bearer, or ?token= once, kept in a cookie)")
	readOnly := fs.Bool("read-only", false, "no actions")
	prefix := fs.String("prefix", "", "mount the dashboard under this path (such as /ductwork)")
	c, err := g.parseConnect(ctx, fs, args)
	if err != nil {
		return err
	}
	defer c.close()
	cl, err := c.client()
	if err != nil {
		return err
	}
	p := strings.TrimSuffix(*prefix, "/")
	if p != "" && !strings.HasPrefix(p, "/") {
		return fmt.Errorf("serve: --prefix %q must start with /", *prefix)
	}
	h := dashboard.New(cl, &dashboard.Config{Store: c.store, ReadOnly: *readOnly})
	if *token != "" {
		h = requireToken(*token, h)
	}
	mux := http.NewServeMux()
	if p == "" {
		mux.Handle("/", h)
	} else {
		mux.Handle(p+"/", http.StripPrefix(p, h))
		mux.Handle(p, http.RedirectHandler(p+"/", http.StatusFound))
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(g.stdout, "dashboard on http://%s%s/\n", ln.Addr(), p)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: shutdown: %w", err)
		}
		return nil
	}
}

// requireToken admits requests that carry token: as a bearer token, in the
// cookie it sets, or once in the query string (then kept in the cookie).
func requireToken(token string, next http.Handler) http.Handler {
	same := func(s string) bool { return subtle.ConstantTimeCompare([]byte(s), []byte(token)) == 1 }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") && same(strings.TrimPrefix(auth, "Bearer ")) {
			next.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie("ductwork_token"); err == nil && same(c.Value) {
			next.ServeHTTP(w, r)
			return
		}
		if q := r.URL.Query().Get("token"); q != "" && same(q) {
			http.SetCookie(w, &http.Cookie{Name: "ductwork_token", Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			u := *r.URL
			v := u.Query()
			v.Del("token")
			u.RawQuery = v.Encode()
			http.Redirect(w, r, u.String(), http.StatusFound)
			return
		}
		http.Error(w, "unauthorized: this dashboard needs its token", http.StatusUnauthorized)
	})
}
