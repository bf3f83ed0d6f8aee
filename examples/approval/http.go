package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/ductwork-go/ductwork"
)

// ApproveHandler is the HTTP side of a manager's decision:
//
//	POST /approve?run=42   {"approved": true, "by": "ana", "note": "fine"}
//
// It sends the Approval signal to the run: 202 when the signal is stored (the
// run resumes at once if it waits, or when it reaches its await), 404 for an
// unknown run, 409 for a finished one, 400 for a bad request.
func ApproveHandler(client *ductwork.Client) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		runID, err := strconv.ParseInt(r.URL.Query().Get("run"), 10, 64)
		if err != nil {
			http.Error(w, "run: not a run ID", http.StatusBadRequest)
			return
		}
		var d Decision
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&d); err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		err = ductwork.Send(r.Context(), client, runID, Approval, d)
		switch {
		case errors.Is(err, ductwork.ErrRunNotFound):
			http.Error(w, err.Error(), http.StatusNotFound)
		case errors.Is(err, ductwork.ErrRunFinished), errors.Is(err, ductwork.ErrUnknownSignal):
			http.Error(w, err.Error(), http.StatusConflict)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	})
}
