package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	gomysql "github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"
)

// The network faults, in the order the command injects them. Each one is put
// on the fault proxies (one per host with -hosts, else one per worker
// process) between the supervisors and the database.
const (
	faultLatency   = "latency"   // latency and jitter both ways, on every proxy
	faultReset     = "reset"     // every connection reset shortly after it carries data, on every proxy
	faultBlackhole = "blackhole" // one proxy accepts and never answers, for longer than the reap threshold
	faultBandwidth = "bandwidth" // a slow link both ways, on every proxy
	faultCommitCut = "commitcut" // a connection cut after COMMIT reached the server, before its reply
	faultPartition = "partition" // one host's link down for longer than the reap threshold (-hosts only)
)

var allFaults = []string{faultLatency, faultReset, faultBlackhole, faultBandwidth, faultCommitCut, faultPartition}

// commitCuts counts the connections cut by the commitcut toxic.
var commitCuts atomic.Int64

// commitCutToxic cuts a connection, with the given probability, between a
// transaction's commit and its reply reaching the client: the commit
// happened, the client cannot know. It sits on the database's stream and
// recognises the reply of a commit there, which exists only once the commit
// is done; it drops that reply and closes the connection. (Cutting on the
// client's COMMIT instead closes the database's side before the commit ran:
// the server may then abort the transaction, which is no ambiguity.)
//
//   - PostgreSQL: clients commit without a COMMIT text (a pipelined batch is
//     one implicit transaction that commits at its Sync; a cached statement
//     is sent as a Bind without its text). The server flushes the results
//     with the ReadyForQuery that follows the commit, so a chunk ending in
//     ReadyForQuery (idle) and carrying the CommandComplete of a COMMIT,
//     UPDATE, INSERT or DELETE is the reply of a commit that happened.
//   - MySQL: an OK packet whose status says no transaction is open any more
//     (SERVER_STATUS_IN_TRANS clear): the reply to COMMIT, or to a statement
//     that committed on its own.
type commitCutToxic struct {
	Probability float64 `json:"probability"`
}

func init() { toxics.Register("commitcut", new(commitCutToxic)) }

// pgIdle is PostgreSQL's ReadyForQuery outside a transaction.
var pgIdle = []byte("Z\x00\x00\x00\x05I")

// isCommitReply reports whether a chunk of the server's stream is the reply
// to a transaction that committed.
func isCommitReply(b []byte) bool {
	return isPGCommitReply(b) || isMySQLCommitReply(b)
}

func isPGCommitReply(b []byte) bool {
	if !bytes.HasSuffix(b, pgIdle) {
		return false
	}
	for _, tag := range []string{"COMMIT\x00", "UPDATE ", "INSERT 0 ", "DELETE "} {
		// CommandComplete: 'C', a 4-byte length (short: three zero
		// bytes), the tag.
		for rest, off := b, 0; ; {
			i := bytes.Index(rest, []byte(tag))
			if i < 0 {
				break
			}
			if j := off + i; j >= 5 && b[j-5] == 'C' && b[j-4] == 0 && b[j-3] == 0 && b[j-2] == 0 {
				return true
			}
			rest, off = rest[i+1:], off+i+1
		}
	}
	return false
}

// isMySQLCommitReply: the chunk is one MySQL packet, the first of a reply
// to a command (sequence number 1: not the OK that ends the handshake), an
// OK packet (header 0x00, affected rows and last insert ID as
// length-encoded integers, then the status flags) whose
// SERVER_STATUS_IN_TRANS flag (0x0001) is clear.
func isMySQLCommitReply(b []byte) bool {
	if len(b) < 11 || int(b[0])|int(b[1])<<8|int(b[2])<<16 != len(b)-4 || b[3] != 1 || b[4] != 0x00 {
		return false
	}
	i := 5
	for range 2 { // affected rows, last insert ID
		switch c := b[i]; {
		case c < 0xfb:
			i++
		case c == 0xfc:
			i += 3
		case c == 0xfd:
			i += 4
		case c == 0xfe:
			i += 9
		default:
			return false
		}
		if i >= len(b) {
			return false
		}
	}
	return i+2 <= len(b) && b[i]&0x01 == 0
}

// Pipe implements toxics.Toxic.
func (t *commitCutToxic) Pipe(stub *toxics.ToxicStub) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if isCommitReply(c.Data) && rand.Float64() < t.Probability {
				commitCuts.Add(1)
				stub.Close()
				return
			}
			stub.Output <- c
		}
	}
}

// proxies holds the fault proxies of one chaos run.
type proxies struct {
	server   *toxiproxy.ApiServer
	upstream string // the database server's address

	mu   sync.Mutex
	list map[string]*toxiproxy.Proxy
	seq  int
}

func newProxies(upstream string) *proxies {
	// The toxics log through zerolog's global logger.
	zerolog.SetGlobalLevel(zerolog.Disabled)
	return &proxies{
		server:   toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop()),
		upstream: upstream,
		list:     map[string]*toxiproxy.Proxy{},
	}
}

// add starts a proxy listening on listen (host:port, port 0 for any) and
// returns its name and address.
func (ps *proxies) add(listen string) (name, addr string, err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.seq++
	name = fmt.Sprintf("p%d", ps.seq)
	p := toxiproxy.NewProxy(ps.server, name, listen, ps.upstream)
	if err := p.Start(); err != nil {
		return "", "", fmt.Errorf("fault proxy on %s: %w", listen, err)
	}
	ps.list[name] = p
	return name, p.Listen, nil
}

// remove stops a proxy and closes its connections.
func (ps *proxies) remove(name string) {
	ps.mu.Lock()
	p := ps.list[name]
	delete(ps.list, name)
	ps.mu.Unlock()
	if p != nil {
		p.Stop()
	}
}

func (ps *proxies) closeAll() {
	ps.mu.Lock()
	names := make([]string, 0, len(ps.list))
	for n := range ps.list {
		names = append(names, n)
	}
	ps.mu.Unlock()
	for _, n := range names {
		ps.remove(n)
	}
}

// toxic is one toxic to add: its type, stream and attributes.
type toxic struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"`
	Toxicity   float32        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

// toxicsFor returns the toxics of a fault; reap is the reap threshold (a
// blackhole outlasts it).
func toxicsFor(fault string) []toxic {
	both := func(typ string, attrs map[string]any) []toxic {
		return []toxic{
			{Name: typ + "_up", Type: typ, Stream: "upstream", Toxicity: 1, Attributes: attrs},
			{Name: typ + "_down", Type: typ, Stream: "downstream", Toxicity: 1, Attributes: attrs},
		}
	}
	switch fault {
	case faultLatency:
		return both("latency", map[string]any{"latency": 60, "jitter": 40})
	case faultReset:
		// Each connection is reset 300 ms after it first carries data
		// while the fault lasts; the pools reconnect and meet the same.
		return []toxic{{Name: "reset", Type: "reset_peer", Stream: "upstream", Toxicity: 1, Attributes: map[string]any{"timeout": 300}}}
	case faultBlackhole:
		return both("timeout", map[string]any{"timeout": 0})
	case faultBandwidth:
		return both("bandwidth", map[string]any{"rate": 8}) // KB/s
	case faultCommitCut:
		return []toxic{{Name: "commitcut", Type: "commitcut", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"probability": 0.15}}}
	}
	return nil
}

// inject puts fault's toxics on the named proxies.
func (ps *proxies) inject(fault string, names []string) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, n := range names {
		p := ps.list[n]
		if p == nil {
			continue // its process exited meanwhile
		}
		for _, t := range toxicsFor(fault) {
			raw, err := json.Marshal(t)
			if err != nil {
				return err
			}
			if _, err := p.Toxics.AddToxicJson(bytes.NewReader(raw)); err != nil {
				return fmt.Errorf("proxy %s: add %s: %w", n, t.Name, err)
			}
		}
	}
	return nil
}

// heal removes every toxic from every proxy. Removing a blackhole closes the
// connections it held.
func (ps *proxies) heal() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.list {
		p.Toxics.ResetToxics(context.Background())
	}
}

// names lists the proxies now running.
func (ps *proxies) names() []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]string, 0, len(ps.list))
	for n := range ps.list {
		out = append(out, n)
	}
	return out
}

// serverAddr returns the database server's host:port from a storeConfig.
func serverAddr(sc storeConfig) (string, error) {
	switch sc.Kind {
	case "postgres":
		u, err := url.Parse(sc.DSN)
		if err != nil {
			return "", err
		}
		host := u.Host
		if _, _, err := net.SplitHostPort(host); err != nil {
			host = net.JoinHostPort(host, "5432")
		}
		return host, nil
	case "mysql":
		cfg, err := gomysql.ParseDSN(sc.DSN)
		if err != nil {
			return "", err
		}
		return cfg.Addr, nil
	}
	return "", fmt.Errorf("network faults need a server backend, not %s", sc.Kind)
}

// via returns sc with the server address replaced by addr (a proxy's). The
// connection timeouts keep a connect into a blackhole from waiting for the
// kernel's.
func via(sc storeConfig, addr string) (storeConfig, error) {
	switch sc.Kind {
	case "postgres":
		u, err := url.Parse(sc.DSN)
		if err != nil {
			return sc, err
		}
		u.Host = addr
		q := u.Query()
		if q.Get("connect_timeout") == "" {
			q.Set("connect_timeout", "5")
		}
		u.RawQuery = q.Encode()
		sc.DSN = u.String()
	case "mysql":
		cfg, err := gomysql.ParseDSN(sc.DSN)
		if err != nil {
			return sc, err
		}
		cfg.Addr = addr
		if cfg.Timeout == 0 {
			cfg.Timeout = 5 * time.Second
		}
		sc.DSN = cfg.FormatDSN()
	default:
		return sc, fmt.Errorf("network faults need a server backend, not %s", sc.Kind)
	}
	return sc, nil
}

// portOf returns the port of host:port.
func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// faultList parses -netfaults: "all" or a comma-separated list.
func faultList(s string, hosts int) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if s == "all" {
		var out []string
		for _, f := range allFaults {
			if f != faultPartition || hosts > 0 {
				out = append(out, f)
			}
		}
		return out, nil
	}
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		known := false
		for _, k := range allFaults {
			known = known || k == f
		}
		switch {
		case !known:
			return nil, fmt.Errorf("%w: unknown fault %q in -netfaults (want %s or all)", errUsage, f, strings.Join(allFaults, ","))
		case f == faultPartition && hosts == 0:
			return nil, fmt.Errorf("%w: the partition fault needs -hosts", errUsage)
		}
		out = append(out, f)
	}
	return out, nil
}
