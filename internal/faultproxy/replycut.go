package faultproxy

import (
	"bytes"
	"math/rand/v2"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
)

// CutCommitReplies cuts connections, each time with the given probability,
// between a transaction's commit and its reply reaching the client: the
// commit happened, the client cannot know. Unlike CutAfterCommit it needs no
// statement text: it sits on the database's stream and recognises the reply
// of a commit there, which exists only once the commit is done, drops that
// reply and closes the connection. It returns the fault's name and a
// function reporting how many connections it cut.
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
func (p *Proxy) CutCommitReplies(probability float64) (name string, cuts func() int64, err error) {
	group, shared := p.newGroup()
	name = "cut_commit_replies"
	if err := p.add(name, replyCutType, Downstream, map[string]any{"probability": probability, "group": group}); err != nil {
		return "", nil, err
	}
	return name, shared.fired.Load, nil
}

const replyCutType = "ductwork_cut_commit_replies"

func init() { toxics.Register(replyCutType, new(replyCutToxic)) }

// replyCutToxic implements CutCommitReplies.
type replyCutToxic struct {
	Probability float64 `json:"probability"`
	Group       string  `json:"group"`
}

// Pipe implements toxics.Toxic.
func (t *replyCutToxic) Pipe(stub *toxics.ToxicStub) {
	shared := sharedOf(t.Group)
	forwardEach(stub, func(c *stream.StreamChunk) bool {
		if IsCommitReply(c.Data) && rand.Float64() < t.Probability {
			shared.fired.Add(1)
			return true
		}
		return false
	})
}

// pgIdle is PostgreSQL's ReadyForQuery outside a transaction.
var pgIdle = []byte("Z\x00\x00\x00\x05I")

// IsCommitReply reports whether a chunk of the database's stream is the
// reply to a transaction that committed (PostgreSQL or MySQL protocol).
func IsCommitReply(b []byte) bool {
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

// ResetAfter resets each connection ms milliseconds after it first carries
// data from the client, for as long as the fault stays (new connections meet
// the same). It returns the fault's name. (toxiproxy's reset_peer toxic:
// it can leave goroutines behind on live links, which matters to a test
// checking for leaks, not to a chaos run.)
func (p *Proxy) ResetAfter(ms int) (string, error) {
	name := "reset_after"
	return name, p.add(name, "reset_peer", Upstream, map[string]int{"timeout": ms})
}
