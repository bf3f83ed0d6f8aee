package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ductwork-go/ductwork"
)

// cmdSend sends a signal, named, with a JSON payload, to a run: the
// untyped Client.SendSignal, checked against the run's stored definition.
func cmdSend(ctx context.Context, g *globals, args []string) error {
	fs := g.flags("send")
	var scope, key string
	var all, asJSON bool
	fs.StringVar(&scope, "scope", "", "only the await at this scope (an expansion's element: 3, 3.0)")
	fs.StringVar(&key, "key", "", "only the await with this key")
	fs.BoolVar(&all, "all", false, "every await of the signal, now and later, once each")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 || len(pos) > 3 {
		return errors.New("send: want RUN-ID SIGNAL [PAYLOAD] (the payload is JSON; null when left out)")
	}
	id, err := runID(pos[:1])
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	name, payload := pos[1], []byte("null")
	if len(pos) == 3 {
		payload = []byte(pos[2])
	}
	if !json.Valid(payload) {
		return fmt.Errorf("send: the payload %q is not JSON", oneLine(string(payload), 40))
	}
	var opts []ductwork.SendOption
	switch n := btoi(scope != "") + btoi(key != "") + btoi(all); {
	case n > 1:
		return errors.New("send: --scope, --key and --all exclude each other")
	case scope != "":
		opts = append(opts, ductwork.ToScope(scope))
	case key != "":
		opts = append(opts, ductwork.ToKey(key))
	case all:
		opts = append(opts, ductwork.ToAll())
	}
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	cl, err := c.client()
	if err != nil {
		return err
	}
	res, err := cl.SendSignal(ctx, id, name, payload, opts...)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if asJSON {
		return writeJSON(g.stdout, res)
	}
	if res.Delivered > 0 {
		fmt.Fprintf(g.stdout, "signal %q sent to run %d (signal %d): delivered to %d waiting await(s)\n", name, id, res.SignalID, res.Delivered)
	} else {
		fmt.Fprintf(g.stdout, "signal %q sent to run %d (signal %d): kept until an await reaches it\n", name, id, res.SignalID)
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
