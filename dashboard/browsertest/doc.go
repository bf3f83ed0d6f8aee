// Package browsertest drives the dashboard in a headless Chromium
// (chromedp): the runs page, the graph and its colours, the executions
// panel, revive, cancel and send a signal, under a prefix too.
//
// It is a module of its own, so that chromedp is not a requirement of the
// library's module (see ARCHITECTURE.md). Run it from this directory:
//
//	go test -race ./...
//
// The tests skip when Chromium is not installed; .ci/run installs it.
package browsertest
