package main

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"github.com/ductwork-go/ductwork/internal/faultproxy"
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

// proxies holds the fault proxies of one chaos run.
type proxies struct {
	upstream string // the database server's address

	mu   sync.Mutex
	list map[string]*faultproxy.Proxy
	seq  int
	cuts []func() int64 // the commit-reply cutters ever injected
}

func newProxies(upstream string) *proxies {
	// The toxics log through zerolog's global logger.
	zerolog.SetGlobalLevel(zerolog.Disabled)
	return &proxies{upstream: upstream, list: map[string]*faultproxy.Proxy{}}
}

// add starts a proxy listening on listen (host:port, port 0 for any) and
// returns its name and address.
func (ps *proxies) add(listen string) (name, addr string, err error) {
	p, err := faultproxy.StartOn(listen, ps.upstream)
	if err != nil {
		return "", "", err
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.seq++
	name = fmt.Sprintf("p%d", ps.seq)
	ps.list[name] = p
	return name, p.Addr(), nil
}

// remove stops a proxy and closes its connections.
func (ps *proxies) remove(name string) {
	ps.mu.Lock()
	p := ps.list[name]
	delete(ps.list, name)
	ps.mu.Unlock()
	if p != nil {
		p.Close()
	}
}

func (ps *proxies) closeAll() {
	for _, n := range ps.names() {
		ps.remove(n)
	}
}

// commitCuts counts the connections cut between COMMIT and its reply, over
// the whole run.
func (ps *proxies) commitCuts() int64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var n int64
	for _, f := range ps.cuts {
		n += f()
	}
	return n
}

// injectOne puts fault on one proxy.
func (ps *proxies) injectOne(p *faultproxy.Proxy, fault string) error {
	both := func(f func(faultproxy.Direction) (string, error)) error {
		if _, err := f(faultproxy.Upstream); err != nil {
			return err
		}
		_, err := f(faultproxy.Downstream)
		return err
	}
	var err error
	switch fault {
	case faultLatency:
		err = both(func(d faultproxy.Direction) (string, error) { return p.Latency(d, 60, 40) })
	case faultReset:
		// Each connection is reset 300 ms after it first carries data
		// while the fault lasts; the pools reconnect and meet the same.
		_, err = p.ResetAfter(300)
	case faultBlackhole:
		_, err = p.Blackhole()
	case faultBandwidth:
		err = both(func(d faultproxy.Direction) (string, error) { return p.Bandwidth(d, 8) }) // KB/s
	case faultCommitCut:
		var cuts func() int64
		_, cuts, err = p.CutCommitReplies(0.15)
		if err == nil {
			ps.cuts = append(ps.cuts, cuts)
		}
	}
	return err
}

// inject puts fault on the named proxies.
func (ps *proxies) inject(fault string, names []string) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, n := range names {
		p := ps.list[n]
		if p == nil {
			continue // its process exited meanwhile
		}
		if err := ps.injectOne(p, fault); err != nil {
			return fmt.Errorf("proxy %s: %s: %w", n, fault, err)
		}
	}
	return nil
}

// heal removes every fault from every proxy. Removing a blackhole closes the
// connections it held.
func (ps *proxies) heal() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.list {
		p.Heal()
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

// nsPrefix starts the names of every namespace this command creates; the
// controller's pid follows, so a later run can remove what a killed one left.
const nsPrefix = "dwchaos-"
