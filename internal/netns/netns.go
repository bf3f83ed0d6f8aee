// Package netns gives a test or a measuring command hosts of its own on one
// machine: Linux network namespaces, each joined to the root namespace by
// veth pairs, so processes run "on another host" and their link to the
// database can be cut (Partition) while they live. It needs root and ip(8).
package netns

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// A Host is a network namespace with two links into the root namespace, each
// a veth pair:
//
//   - the data link carries the supervisors' connections to the database. Its
//     root end has a fault proxy listening on it, which forwards to the
//     database server on 127.0.0.1 (the servers listen on loopback only, and a
//     namespace has a loopback of its own). Partitioning the host sets the
//     root end of this link down: the host's packets go nowhere and nothing
//     comes back, while its processes stay alive and their TCP connections
//     stay open, as when a switch port dies;
//   - the observer link carries the recording of executions (the chaos
//     command's own table) through a proxy that never has faults, so that a
//     partition cuts the host from the database, not from the observer.
//
// Addresses: 10.<net>.<2i+1>.0/24 for host i's data link and
// 10.<net>.<2i+2>.0/24 for its observer link, the root end .1 and the host
// end .2; <net> is picked at random among the second octets no interface uses.
type Host struct {
	Index    int
	NS       string // namespace name
	DataRoot string // root end of the data link
	DataAddr string // root end's address (a proxy to the database listens there)
	ObsAddr  string // root end's address of the observer link
	HostAddr string // the host's own address on its data link
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeStale deletes the namespaces (and with them their links) named with
// prefix by processes that no longer run.
func removeStale(prefix string) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		pidS, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidS)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		_ = ipCmd("netns", "del", name)
	}
}

// freeSubnet picks a second octet for 10.x.0.0/16 that no address on this
// machine uses.
func freeSubnet() (int, error) {
	out, err := exec.Command("ip", "-o", "addr").Output()
	if err != nil {
		return 0, fmt.Errorf("ip -o addr: %w", err)
	}
	for range 100 {
		n := 64 + rand.IntN(128)
		if !strings.Contains(string(out), fmt.Sprintf(" 10.%d.", n)) {
			return n, nil
		}
	}
	return 0, errors.New("no free 10.x.0.0/16 subnet")
}

// Setup creates n hosts named prefix, the caller's pid and the index (so a
// later call with the same prefix removes what a killed process left). On any
// error it removes what it created. The returned function removes every
// host; it is safe to call more than once.
func Setup(prefix string, n int) ([]*Host, func(), error) {
	removeStale(prefix)
	subnet, err := freeSubnet()
	if err != nil {
		return nil, nil, err
	}
	pid := os.Getpid()
	var hosts []*Host
	teardown := func() {
		for _, h := range hosts {
			// Deleting the namespace deletes the host ends, and a veth
			// pair goes with either end; the root ends are deleted
			// explicitly in case the namespace was never reached.
			_ = ipCmd("netns", "del", h.NS)
			_ = exec.Command("ip", "link", "del", h.DataRoot).Run()
			_ = exec.Command("ip", "link", "del", "dw"+strconv.Itoa(pid%100000)+"o"+strconv.Itoa(h.Index)+"r").Run()
		}
		hosts = nil
	}
	for i := range n {
		h := &Host{Index: i, NS: fmt.Sprintf("%s%d-%d", prefix, pid, i)}
		hosts = append(hosts, h)
		base := "dw" + strconv.Itoa(pid%100000)
		data, obs := base+"d"+strconv.Itoa(i), base+"o"+strconv.Itoa(i)
		h.DataRoot = data + "r"
		dnet, onet := fmt.Sprintf("10.%d.%d", subnet, 2*i+1), fmt.Sprintf("10.%d.%d", subnet, 2*i+2)
		h.DataAddr, h.ObsAddr, h.HostAddr = dnet+".1", onet+".1", dnet+".2"
		steps := [][]string{
			{"netns", "add", h.NS},
			{"-n", h.NS, "link", "set", "lo", "up"},
		}
		for _, l := range []struct{ name, subnet string }{{data, dnet}, {obs, onet}} {
			steps = append(steps,
				[]string{"link", "add", l.name + "r", "type", "veth", "peer", "name", l.name + "h"},
				[]string{"link", "set", l.name + "h", "netns", h.NS},
				[]string{"addr", "add", l.subnet + ".1/24", "dev", l.name + "r"},
				[]string{"link", "set", l.name + "r", "up"},
				[]string{"-n", h.NS, "addr", "add", l.subnet + ".2/24", "dev", l.name + "h"},
				[]string{"-n", h.NS, "link", "set", l.name + "h", "up"},
			)
		}
		for _, s := range steps {
			if err := ipCmd(s...); err != nil {
				teardown()
				return nil, nil, fmt.Errorf("host %d: %w", i, err)
			}
		}
	}
	return hosts, teardown, nil
}

// Partition cuts the host's data link: its packets go nowhere and nothing
// comes back, while its processes and their connections stay open.
func (h *Host) Partition() error { return ipCmd("link", "set", h.DataRoot, "down") }

// Heal restores the data link Partition cut.
func (h *Host) Heal() error { return ipCmd("link", "set", h.DataRoot, "up") }

// Command returns a command that runs name inside the host's namespace. ip
// execs it, so the process's pid is the command's.
func (h *Host) Command(name string) *exec.Cmd {
	return exec.Command("ip", "netns", "exec", h.NS, name)
}
