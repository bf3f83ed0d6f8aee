// Package dashboard is Ductwork's web window: an http.Handler to mount in your
// own server (under any prefix, with http.StripPrefix), or to run with
// `ductwork serve`.
//
//	mux.Handle("/ductwork/", http.StripPrefix("/ductwork", dashboard.New(client, &dashboard.Config{Store: store})))
//
// Pages, relative to the mount point: / (overview), /runs (filters in the
// query string), /runs/{id} (a run with its graph drawn as SVG from the
// definition stored when the run's version was registered), /processes and
// /definitions. Pages refresh their live parts by light polling.
//
// Actions (revive, cancel with a reason) are POST forms, confirmed in the
// page and protected against cross-site requests by a token bound to a
// cookie; Config.ReadOnly removes them and Config.AuthorizeFunc decides every
// request. Every value read from the database is HTML-escaped by
// html/template. Templates and assets are embedded: there is no build step.
package dashboard
