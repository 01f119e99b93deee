package main

// bigstream: one stream carries many gigabytes (past the 2^32-byte wrap of smux v2's
// per-stream byte counters), with data that costs next to nothing to produce and check.
//
// Per accepted stream the client sends one command: a byte and a u64 LE byte count N.
//
//	'W' N  the server writes N bytes of periodic(streamID) in -chunk writes, then closes
//	       the stream (FIN); prints "bigstream stream ID: wrote N bytes in T ms"
//	       (or "bigstream stream ID: write error after K bytes: ERR").
//	'R' N  the server reads exactly N bytes (-chunk read buffer), checking each byte
//	       against periodic(streamID), then writes 16 bytes: u64 LE bytes read, u64 LE
//	       stream offset of the first wrong byte (2^64-1 when all are right), and closes;
//	       prints "bigstream stream ID: read N bytes in T ms, first mismatch none|OFFSET"
//	       (or "bigstream stream ID: read error after K bytes: ERR").
//
// periodic(seed): the byte at stream offset o is pattern(seed, periodLen)[o % periodLen].
// periodLen is prime, so no write, read, frame or window size lines up with it, and a
// lost or repeated frame shifts the data against the pattern.

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/xtaci/smux"
)

// periodLen is the period of periodic(seed) (a prime just above 10^6).
const periodLen = 1000003

// periodicTable returns pattern(seed, periodLen) followed by its first `extra` bytes
// again, so that the expected bytes at offset o, up to extra of them, are one slice:
// table[o%periodLen:].
func periodicTable(seed uint32, extra int) []byte {
	t := pattern(seed, periodLen)
	out := make([]byte, periodLen+extra)
	copy(out, t)
	for i := periodLen; i < len(out); i += periodLen {
		copy(out[i:], t)
	}
	return out
}

// bigWrite writes n bytes of periodic(st.ID()) in chunk-sized writes; it returns the
// bytes written and the first error.
func bigWrite(st *smux.Stream, n uint64, chunk int) (uint64, error) {
	table := periodicTable(st.ID(), chunk)
	var off uint64
	for off < n {
		sz := uint64(chunk)
		if n-off < sz {
			sz = n - off
		}
		p := off % periodLen
		w, err := st.Write(table[p : p+sz])
		off += uint64(w)
		if err != nil {
			return off, err
		}
	}
	return off, nil
}

// bigRead reads exactly n bytes with a chunk-sized buffer and checks them against
// periodic(st.ID()); it returns the bytes read, the offset of the first wrong byte
// (math.MaxUint64 if none) and the read error that ended it early, if any.
func bigRead(st *smux.Stream, n uint64, chunk int) (uint64, uint64, error) {
	table := periodicTable(st.ID(), chunk)
	buf := make([]byte, chunk)
	var off uint64
	mismatch := uint64(math.MaxUint64)
	for off < n {
		want := uint64(chunk)
		if n-off < want {
			want = n - off
		}
		r, err := st.Read(buf[:want])
		if r > 0 && mismatch == math.MaxUint64 {
			p := off % periodLen
			if !bytes.Equal(buf[:r], table[p:p+uint64(r)]) {
				for i := 0; i < r; i++ {
					if buf[i] != table[p+uint64(i)] {
						mismatch = off + uint64(i)
						break
					}
				}
			}
		}
		off += uint64(r)
		if err != nil && off < n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return off, mismatch, err
		}
	}
	return off, mismatch, nil
}

func runBigStream(args []string) {
	fs := flag.NewFlagSet("bigstream", flag.ExitOnError)
	c := addCommon(fs)
	addr := fs.String("listen", "127.0.0.1:0", "listen address")
	chunk := fs.Int("chunk", 128<<10, "write size ('W') and read buffer size ('R')")
	parse(fs, c, args)
	if *chunk <= 0 {
		fatalf("-chunk must be positive")
	}
	cfg := c.config()
	ln := listen(*addr)
	serveStreams(ln, cfg, func(st *smux.Stream) {
		defer st.Close()
		var cmd [9]byte
		if _, err := io.ReadFull(st, cmd[:]); err != nil {
			say("bigstream stream %d: reading the command: %v", st.ID(), err)
			return
		}
		n := binary.LittleEndian.Uint64(cmd[1:])
		start := time.Now()
		switch cmd[0] {
		case 'W':
			done, err := bigWrite(st, n, *chunk)
			if err != nil {
				say("bigstream stream %d: write error after %d bytes: %v", st.ID(), done, err)
				return
			}
			say("bigstream stream %d: wrote %d bytes in %d ms", st.ID(), done, time.Since(start).Milliseconds())
		case 'R':
			done, mismatch, err := bigRead(st, n, *chunk)
			if err != nil {
				say("bigstream stream %d: read error after %d bytes: %v", st.ID(), done, err)
				return
			}
			var out [16]byte
			binary.LittleEndian.PutUint64(out[:8], done)
			binary.LittleEndian.PutUint64(out[8:], mismatch)
			if _, err := st.Write(out[:]); err != nil {
				logf("stream %d: writing result: %v", st.ID(), err)
			}
			first := "none"
			if mismatch != math.MaxUint64 {
				first = fmt.Sprint(mismatch)
			}
			say("bigstream stream %d: read %d bytes in %d ms, first mismatch %s", st.ID(), done, time.Since(start).Milliseconds(), first)
		default:
			say("bigstream stream %d: unknown command %q", st.ID(), cmd[0])
		}
	})
}
