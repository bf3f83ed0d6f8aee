// Package faultproxy puts a fault-injecting TCP proxy between the library and
// its database, for tests, the conformance suite and the chaos command. It is
// built on Shopify's toxiproxy, used as a library: no toxiproxy server runs,
// and the faults are added and removed with method calls.
//
// The faults: latency with jitter, connection resets, a blackhole (packets
// accepted and never answered, for as long as it lasts), a bandwidth limit,
// and a cut right after the client has sent a transaction's commit and before
// the reply comes back (an ambiguous commit: it landed, the client cannot
// tell).
package faultproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"
)

// Proxy is one proxy, listening on a loopback port, in front of one upstream
// address. Its methods are safe for concurrent use.
type Proxy struct {
	p *toxiproxy.Proxy

	mu    sync.Mutex
	names map[string]bool
}

var server = sync.OnceValue(func() *toxiproxy.ApiServer {
	return toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
})

// Start starts a proxy on 127.0.0.1 (a free port) in front of upstream
// ("host:port"). Close stops it.
func Start(upstream string) (*Proxy, error) { return StartOn("127.0.0.1:0", upstream) }

// StartOn starts a proxy listening on listen ("host:port", port 0 for a
// free one; the host may be an address of another network namespace's
// link) in front of upstream. Close stops it.
func StartOn(listen, upstream string) (*Proxy, error) {
	p := toxiproxy.NewProxy(server(), "ductwork-"+upstream, listen, upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("faultproxy: start proxy on %s to %s: %w", listen, upstream, err)
	}
	return &Proxy{p: p, names: map[string]bool{}}, nil
}

// Addr is the address clients dial instead of the upstream ("host:port").
func (p *Proxy) Addr() string { return p.p.Listen }

// Upstream is the address the proxy forwards to.
func (p *Proxy) Upstream() string { return p.p.Upstream }

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() { p.p.Stop() }

// Direction says which way a fault acts.
type Direction string

// Directions.
const (
	// Upstream is client to database.
	Upstream Direction = "upstream"
	// Downstream is database to client.
	Downstream Direction = "downstream"
)

func (p *Proxy) add(name, typ string, dir Direction, attrs any) error {
	body, err := json.Marshal(map[string]any{
		"name": name, "type": typ, "stream": string(dir), "toxicity": 1.0, "attributes": attrs,
	})
	if err != nil {
		return err
	}
	if _, err := p.p.Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
		return fmt.Errorf("faultproxy: add %s: %w", name, err)
	}
	p.mu.Lock()
	p.names[name] = true
	p.mu.Unlock()
	return nil
}

// Remove removes the fault named name (as returned by the method that added
// it). Removing a blackhole closes the connections it held.
func (p *Proxy) Remove(name string) error {
	if name == "cut_after_commit" {
		_ = p.Remove(name + "_hold")
	}
	p.mu.Lock()
	delete(p.names, name)
	p.mu.Unlock()
	if err := p.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		return fmt.Errorf("faultproxy: remove %s: %w", name, err)
	}
	return nil
}

// Heal removes every fault.
func (p *Proxy) Heal() {
	p.mu.Lock()
	names := make([]string, 0, len(p.names))
	for n := range p.names {
		names = append(names, n)
	}
	p.names = map[string]bool{}
	p.mu.Unlock()
	for _, n := range names {
		_ = p.p.Toxics.RemoveToxic(context.Background(), n)
	}
}

// Latency delays data in direction dir by ms milliseconds, plus or minus up
// to jitterMS. It returns the fault's name.
func (p *Proxy) Latency(dir Direction, ms, jitterMS int) (string, error) {
	name := "latency_" + string(dir)
	return name, p.add(name, "latency", dir, map[string]int{"latency": ms, "jitter": jitterMS})
}

// ResetConnections cuts every connection through the proxy at once, as a
// peer resetting them would; new connections are accepted again at once.
// (toxiproxy's reset_peer toxic leaves goroutines behind when added and
// removed on live links, so resets are made by restarting the proxy.)
func (p *Proxy) ResetConnections() error {
	p.p.Stop()
	if err := p.p.Start(); err != nil {
		return fmt.Errorf("faultproxy: restart proxy: %w", err)
	}
	return nil
}

// Blackhole drops every byte in both directions, without closing anything,
// until it is removed (then the connections it held are closed). It returns
// the fault's name.
func (p *Proxy) Blackhole() (string, error) {
	if err := p.add("blackhole_up", "timeout", Upstream, map[string]int{"timeout": 0}); err != nil {
		return "", err
	}
	return "blackhole", p.add("blackhole_down", "timeout", Downstream, map[string]int{"timeout": 0})
}

// Unblackhole removes a Blackhole.
func (p *Proxy) Unblackhole() error {
	err1 := p.Remove("blackhole_up")
	err2 := p.Remove("blackhole_down")
	if err1 != nil {
		return err1
	}
	return err2
}

// Bandwidth limits direction dir to kbps kilobytes per second. It returns
// the fault's name.
func (p *Proxy) Bandwidth(dir Direction, kbps int) (string, error) {
	name := "bandwidth_" + string(dir)
	return name, p.add(name, "bandwidth", dir, map[string]int{"rate": kbps})
}

// CountRequests counts the chunks clients send through the proxy from now on
// (each a request the database answers, for request-reply protocols: a
// round trip). It returns the fault's name and the running count.
func (p *Proxy) CountRequests() (name string, count func() int64, err error) {
	group, shared := p.newGroup()
	name = "count_requests"
	if err := p.add(name, countType, Upstream, map[string]any{"group": group}); err != nil {
		return "", nil, err
	}
	return name, shared.fired.Load, nil
}

// countToxic implements CountRequests.
type countToxic struct {
	Group string `json:"group"`
}

// Pipe implements toxics.Toxic.
func (t *countToxic) Pipe(stub *toxics.ToxicStub) {
	shared := sharedOf(t.Group)
	forwardEach(stub, func(*stream.StreamChunk) bool {
		shared.fired.Add(1)
		return false
	})
}

// CutAfterCommit arms the ambiguous-commit fault: on each connection, a
// client chunk that contains mark arms it, and the next client chunk that
// contains commit (or, with commit empty, the next chunk at all: the
// execution that follows a statement's preparation) is forwarded to the
// database; the database commits and its reply is lost: the connection is
// closed without it. It fires at most times times in all (times < 1 means
// once) and returns the fault's name and a function reporting how many times
// it fired.
//
// mark is a piece of the statement whose transaction is to be cut (its text
// is sent when the statement is prepared on a connection); commit is the
// commit's text for drivers that send one ("COMMIT"), empty for a pipelined
// batch that commits as one implicit transaction.
//
// How the reply is lost matters: closing the database's side at once makes
// it fail to send its reply before it commits (PostgreSQL then aborts the
// transaction: no ambiguity). So the database's side stays open for CutHold
// after the commit is sent, while replies from the database on every
// connection are held back (delayed, on connections other than the cut one);
// then the cut connection is closed on both sides and its held reply dropped.
//
// begin, if set, is the text that starts a transaction ("START
// TRANSACTION"): it disarms the connection, so that a mark sent outside a
// transaction (a statement prepared on one connection and run on another)
// does not arm the cut of the next, unrelated transaction there.
func (p *Proxy) CutAfterCommit(mark, begin, commit string, times int) (name string, fired func() int, err error) {
	if times < 1 {
		times = 1
	}
	group, shared := p.newGroup()
	name = "cut_after_commit"
	if err := p.add(name+"_hold", holdType, Downstream, map[string]any{"group": group}); err != nil {
		return "", nil, err
	}
	attrs := map[string]any{"mark": mark, "begin": begin, "commit": commit, "times": times, "group": group}
	if err := p.add(name, cutType, Upstream, attrs); err != nil {
		return "", nil, err
	}
	return name, func() int { return int(shared.fired.Load()) }, nil
}

// CutHold is how long the database's side of a cut connection stays open
// after the commit was sent to it: long enough for the commit to finish.
const CutHold = 300 * time.Millisecond

const (
	cutType   = "ductwork_cut_after_commit"
	holdType  = "ductwork_hold_replies"
	countType = "ductwork_count_requests"
)

func init() {
	toxics.Register(cutType, new(cutToxic))
	toxics.Register(holdType, new(holdToxic))
	toxics.Register(countType, new(countToxic))
}

var (
	cutGroups   atomic.Int64
	cutRegistry sync.Map // group → *cutShared
)

// cutShared is what the two toxics of one CutAfterCommit share.
type cutShared struct {
	fired     atomic.Int64
	holdUntil atomic.Int64 // unix nanoseconds
}

func (s *cutShared) holding() bool { return time.Now().UnixNano() < s.holdUntil.Load() }

// newGroup registers the state the toxics of one fault share, under a name
// their attributes carry.
func (p *Proxy) newGroup() (string, *cutShared) {
	group := fmt.Sprintf("%p-%d", p, cutGroups.Add(1))
	shared := &cutShared{}
	cutRegistry.Store(group, shared)
	return group, shared
}

// forwardEach is the loop of a toxic that looks at each chunk on its own:
// it passes each on, unless cut reports that the connection is to be cut
// there (the chunk is then dropped and the connection closed), until the
// connection or the toxic ends.
func forwardEach(stub *toxics.ToxicStub, cut func(c *stream.StreamChunk) bool) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil || cut(c) {
				stub.Close()
				return
			}
			stub.Output <- c
		}
	}
}

func sharedOf(group string) *cutShared {
	if v, ok := cutRegistry.Load(group); ok {
		return v.(*cutShared)
	}
	return &cutShared{}
}

// cutToxic is the upstream half of CutAfterCommit. One value serves every
// connection of the proxy; the per-connection state says whether the
// connection is armed.
type cutToxic struct {
	Mark   string `json:"mark"`
	Begin  string `json:"begin"`
	Commit string `json:"commit"`
	Times  int64  `json:"times"`
	Group  string `json:"group"`
}

type cutState struct{ armed bool }

// NewState implements toxics.StatefulToxic.
func (t *cutToxic) NewState() any { return &cutState{} }

// Pipe implements toxics.Toxic.
func (t *cutToxic) Pipe(stub *toxics.ToxicStub) {
	state, _ := stub.State.(*cutState)
	if state == nil {
		state = &cutState{}
	}
	shared := sharedOf(t.Group)
	mark, begin, commit := []byte(t.Mark), []byte(t.Begin), []byte(t.Commit)
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			fire := false
			if len(begin) > 0 && bytes.Contains(c.Data, begin) {
				state.armed = false
			}
			switch {
			case state.armed && (len(commit) == 0 || bytes.Contains(c.Data, commit)):
				fire = true
			case bytes.Contains(c.Data, mark):
				state.armed = true
				// A chunk holding both the statement and its commit.
				_, after, _ := bytes.Cut(c.Data, mark)
				fire = len(commit) > 0 && bytes.Contains(after, commit)
			}
			if fire && !take(&shared.fired, t.Times) {
				fire = false
				state.armed = false
			}
			if fire {
				shared.holdUntil.Store(time.Now().Add(CutHold + CutHold/2).UnixNano())
			}
			stub.Output <- c
			if fire {
				// Keep the database's side open while it commits and
				// replies (the reply is held downstream), then close it:
				// the downstream half drops the held reply.
				hold := time.NewTimer(CutHold)
			wait:
				for {
					select {
					case <-hold.C:
						break wait
					case c := <-stub.Input:
						if c == nil {
							break wait
						}
					}
				}
				hold.Stop()
				stub.Close()
				drain(stub)
				return
			}
		}
	}
}

// holdToxic is the downstream half of CutAfterCommit: while a cut is in
// progress it holds replies back instead of passing them on; a connection
// whose database side closes meanwhile (the cut one) loses what was held.
type holdToxic struct {
	Group string `json:"group"`
}

// Pipe implements toxics.Toxic.
func (t *holdToxic) Pipe(stub *toxics.ToxicStub) {
	shared := sharedOf(t.Group)
	var held []*stream.StreamChunk
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stub.Interrupt:
			for _, c := range held {
				stub.Output <- c
			}
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close() // what is held is lost
				return
			}
			if len(held) > 0 || shared.holding() {
				held = append(held, c)
				continue
			}
			stub.Output <- c
		case <-tick.C:
			if len(held) > 0 && !shared.holding() {
				for _, c := range held {
					stub.Output <- c
				}
				held = nil
			}
		}
	}
}

// take counts one firing in n if fewer than max have happened.
func take(n *atomic.Int64, max int64) bool {
	for {
		v := n.Load()
		if v >= max {
			return false
		}
		if n.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// drain drops what the client still sends on a cut connection until its
// side closes, so that the proxy's goroutines feeding this stub end.
func drain(stub *toxics.ToxicStub) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				return
			}
		}
	}
}
