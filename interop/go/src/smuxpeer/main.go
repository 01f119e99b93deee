// smuxpeer is the Go reference peer used by rsmux's interoperability tests.
//
// It is built in GOPATH mode against the smux package Debian ships
// (github.com/xtaci/smux v1.5.16) by interop/build.sh.  One binary, many roles:
//
//	smuxpeer echo          -listen ADDR              smux server, echoes every accepted stream
//	smuxpeer client        -connect ADDR -scenario S smux client scenarios against a server
//	smuxpeer opener        -listen ADDR -streams N -bytes M
//	smuxpeer slowreader    -listen ADDR              reads slowly, answers count+hash
//	smuxpeer slowwriter    -listen ADDR -bytes M     writes M bytes to each accepted stream
//	smuxpeer idle          -listen ADDR              echo server reporting session death on stdout
//	smuxpeer closer        -listen ADDR -after-ms N  closes the whole session after N ms
//	smuxpeer tunnel-server -listen ADDR -target HOST:PORT
//	smuxpeer tunnel-client -listen ADDR -server HOST:PORT
//	smuxpeer bench-server  -listen ADDR
//	smuxpeer bench-client  -connect ADDR -mode one|many|openclose|echo -seconds S [-mux smux|yamux] [-json]
//	smuxpeer yamux-bench-server -listen ADDR         the bench server over hashicorp/yamux (yamux.go)
//	smuxpeer features                                which multiplexers this build has (JSON)
//	smuxpeer scale-client  -connect ADDR -sessions N -streams M -seconds S (see scale.go)
//	smuxpeer tcp-echo      -listen ADDR              plain TCP echo (tunnel target)
//	smuxpeer bigstream     -listen ADDR              writes/reads N bytes per stream on request
//
// Every listening role prints exactly one line "listening on 127.0.0.1:PORT" on stdout
// once its listener is ready.  Diagnostics go to stderr.  See interop/README.md for the
// per-role protocols.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/xtaci/smux"
)

// ---------------------------------------------------------------------------------------
// common flags / helpers

type commonFlags struct {
	ver              int
	keepalive        float64
	keepaliveTimeout float64
	noKeepalive      bool
	streambuf        int
	smuxbuf          int
	framesize        int
	quiet            bool
}

func addCommon(fs *flag.FlagSet) *commonFlags {
	c := &commonFlags{}
	fs.IntVar(&c.ver, "ver", 1, "smux protocol version (1 or 2)")
	fs.Float64Var(&c.keepalive, "keepalive", 0, "keepalive interval in seconds (0 = smux default 10)")
	fs.Float64Var(&c.keepaliveTimeout, "keepalive-timeout", 0, "keepalive timeout in seconds (0 = smux default 30)")
	fs.BoolVar(&c.noKeepalive, "nokeepalive", false, "disable keepalive")
	fs.IntVar(&c.streambuf, "streambuf", 0, "MaxStreamBuffer in bytes (0 = smux default 65536)")
	fs.IntVar(&c.smuxbuf, "smuxbuf", 0, "MaxReceiveBuffer in bytes (0 = smux default 4194304)")
	fs.IntVar(&c.framesize, "framesize", 0, "MaxFrameSize in bytes (0 = smux default 32768)")
	fs.BoolVar(&c.quiet, "quiet", false, "less diagnostics on stderr")
	return c
}

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func (c *commonFlags) config() *smux.Config {
	cfg := smux.DefaultConfig()
	cfg.Version = c.ver
	if c.keepalive > 0 {
		cfg.KeepAliveInterval = secs(c.keepalive)
	}
	if c.keepaliveTimeout > 0 {
		cfg.KeepAliveTimeout = secs(c.keepaliveTimeout)
	}
	cfg.KeepAliveDisabled = c.noKeepalive
	if c.streambuf > 0 {
		cfg.MaxStreamBuffer = c.streambuf
	}
	if c.smuxbuf > 0 {
		cfg.MaxReceiveBuffer = c.smuxbuf
	}
	if c.framesize > 0 {
		cfg.MaxFrameSize = c.framesize
	}
	if err := smux.VerifyConfig(cfg); err != nil {
		fatalf("invalid smux config: %v", err)
	}
	return cfg
}

var role = "smuxpeer"
var quiet bool

func logf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "[go-%s] "+format+"\n", append([]interface{}{role}, args...)...)
}

func vlogf(format string, args ...interface{}) {
	if !quiet {
		logf(format, args...)
	}
}

func fatalf(format string, args ...interface{}) {
	logf("FATAL: "+format, args...)
	os.Exit(1)
}

// stdoutMu serialises the lines this program prints on stdout (tests parse them).
var stdoutMu sync.Mutex

func say(format string, args ...interface{}) {
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
}

// checkLoopback refuses to listen anywhere but on a loopback address.
func checkLoopback(addr string) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		fatalf("bad address %q: %v", addr, err)
	}
	if host == "localhost" {
		return
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		fatalf("refusing to listen on non-loopback address %q", addr)
	}
}

// listen opens the TCP listener and announces it with the one "listening on" line.
func listen(addr string) net.Listener {
	checkLoopback(addr)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fatalf("listen %s: %v", addr, err)
	}
	say("listening on %s", ln.Addr().String())
	return ln
}

// acceptLoop calls handle in a new goroutine for every accepted TCP connection.
func acceptLoop(ln net.Listener, handle func(net.Conn)) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			fatalf("accept: %v", err)
		}
		go handle(conn)
	}
}

// serveSessions runs an smux server session on every TCP connection accepted on ln and
// hands it to handle; the session is closed when handle returns.
func serveSessions(ln net.Listener, cfg *smux.Config, handle func(*smux.Session)) {
	acceptLoop(ln, func(conn net.Conn) {
		sess, err := smux.Server(conn, cfg)
		if err != nil {
			logf("smux.Server: %v", err)
			conn.Close()
			return
		}
		defer sess.Close()
		handle(sess)
	})
}

// serveStreams is serveSessions with every accepted stream passed to handle on its own
// goroutine.
func serveStreams(ln net.Listener, cfg *smux.Config, handle func(*smux.Stream)) {
	serveSessions(ln, cfg, func(sess *smux.Session) {
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				vlogf("session ended: %v", err)
				return
			}
			go handle(st)
		}
	})
}

// pattern returns n bytes of the deterministic test pattern for seed: an xorshift32
// sequence, each 32-bit state emitted little-endian.  The Rust tests implement the
// same function (see rsmux/tests/interop_go.rs).
func pattern(seed uint32, n int) []byte {
	b := make([]byte, n+3)
	x := seed*2654435761 ^ 0x6d2b79f5
	if x == 0 {
		x = 1
	}
	for i := 0; i < n; i += 4 {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		binary.LittleEndian.PutUint32(b[i:], x)
	}
	return b[:n]
}

// fnv1a64 hashes data with 64-bit FNV-1a (continuing from h; start with fnvOffset).
const fnvOffset = 14695981039346656037
const fnvPrime = 1099511628211

func fnv1a64(h uint64, data []byte) uint64 {
	for _, c := range data {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

// echoStream copies everything read from st back to st until EOF or error, then
// closes the stream.
func echoStream(st *smux.Stream) {
	defer st.Close()
	buf := make([]byte, 65536)
	for {
		n, err := st.Read(buf)
		if n > 0 {
			if _, werr := st.Write(buf[:n]); werr != nil {
				vlogf("stream %d: echo write error: %v", st.ID(), werr)
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				vlogf("stream %d: echo read error: %v", st.ID(), err)
			}
			return
		}
	}
}

// ---------------------------------------------------------------------------------------
// main / dispatch

type roleFunc func(args []string)

var roles = map[string]roleFunc{
	"echo":               runEcho,
	"client":             runClient,
	"opener":             runOpener,
	"slowreader":         runSlowReader,
	"slowwriter":         runSlowWriter,
	"idle":               runIdle,
	"closer":             runCloser,
	"tunnel-server":      runTunnelServer,
	"tunnel-client":      runTunnelClient,
	"bench-server":       runBenchServer,
	"bench-client":       runBenchClient,
	"features":           runFeatures,
	"yamux-bench-server": runYamuxBenchServer,
	"scale-client":       runScaleClient,
	"tcp-echo":           runTCPEcho,
	"bigstream":          runBigStream,
}

func usage() {
	names := make([]string, 0, len(roles))
	for k := range roles {
		names = append(names, k)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: smuxpeer ROLE [flags]   (ROLE -h for flags)\nroles: %s\n", strings.Join(names, ", "))
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	f, ok := roles[os.Args[1]]
	if !ok {
		usage()
	}
	role = os.Args[1]
	f(os.Args[2:])
}

func parse(fs *flag.FlagSet, c *commonFlags, args []string) {
	if err := fs.Parse(args); err != nil {
		os.Exit(2)
	}
	if fs.NArg() != 0 {
		fatalf("unexpected arguments: %v", fs.Args())
	}
	if c != nil {
		quiet = c.quiet
	}
}

// ---------------------------------------------------------------------------------------
// echo: smux server, every accepted stream is echoed until EOF, then closed.

func serveEchoSession(conn net.Conn, cfg *smux.Config, hold time.Duration, onEnd func(error)) {
	sess, err := smux.Server(conn, cfg)
	if err != nil {
		logf("smux.Server: %v", err)
		conn.Close()
		return
	}
	defer sess.Close()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			vlogf("session from %s ended: %v", conn.RemoteAddr(), err)
			if onEnd != nil {
				onEnd(err)
			}
			if hold > 0 && !sess.IsClosed() {
				// keep the (possibly broken) session open like a passive smux user would:
				// keepalive NOPs continue until the session closes itself or hold passes
				deadline := time.Now().Add(hold)
				for time.Now().Before(deadline) && !sess.IsClosed() {
					time.Sleep(10 * time.Millisecond)
				}
			}
			return
		}
		go echoStream(st)
	}
}

func runEcho(args []string) {
	fs := flag.NewFlagSet("echo", flag.ExitOnError)
	c := addCommon(fs)
	addr := fs.String("listen", "127.0.0.1:0", "listen address")
	hold := fs.Float64("hold-on-error", 0, "seconds to keep a session open after AcceptStream fails (e.g. protocol error) before closing it")
	parse(fs, c, args)
	cfg := c.config()
	ln := listen(*addr)
	acceptLoop(ln, func(conn net.Conn) { serveEchoSession(conn, cfg, secs(*hold), nil) })
}

// ---------------------------------------------------------------------------------------
// idle: like echo, but prints "closed <reason>" on stdout when a session dies (keepalive
// timeout, peer gone, protocol error).

func runIdle(args []string) {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	c := addCommon(fs)
	addr := fs.String("listen", "127.0.0.1:0", "listen address")
	parse(fs, c, args)
	cfg := c.config()
	ln := listen(*addr)
	acceptLoop(ln, func(conn net.Conn) {
		start := time.Now()
		serveEchoSession(conn, cfg, 0, func(err error) {
			say("closed after %d ms: %v", time.Since(start).Milliseconds(), err)
		})
	})
}

// ---------------------------------------------------------------------------------------
// closer: smux server (echoing streams) that closes the whole session after -after-ms.
// Session.Close sends no frame: the peer only sees the TCP connection close.

func runCloser(args []string) {
	fs := flag.NewFlagSet("closer", flag.ExitOnError)
	c := addCommon(fs)
	addr := fs.String("listen", "127.0.0.1:0", "listen address")
	after := fs.Int("after-ms", 500, "close the session this many ms after the TCP connection was accepted")
	parse(fs, c, args)
	cfg := c.config()
	ln := listen(*addr)
	acceptLoop(ln, func(conn net.Conn) {
		sess, err := smux.Server(conn, cfg)
		if err != nil {
			logf("smux.Server: %v", err)
			conn.Close()
			return
		}
		go func() {
			for {
				st, err := sess.AcceptStream()
				if err != nil {
					return
				}
				go echoStream(st)
			}
		}()
		time.Sleep(time.Duration(*after) * time.Millisecond)
		err = sess.Close()
		say("closed session: %v", err)
	})
}

// ---------------------------------------------------------------------------------------
// opener: per TCP connection, the server opens -streams streams itself, writes -bytes
// bytes of pattern(streamID) on each, closes each stream (FIN), then waits for the
// client to go away.

func runOpener(args []string) {
	fs := flag.NewFlagSet("opener", flag.ExitOnError)
	c := addCommon(fs)
	addr := fs.String("listen", "127.0.0.1:0", "listen address")
	nstreams := fs.Int("streams", 10, "streams to open per session")
	nbytes := fs.Int("bytes", 1<<20, "bytes to write on each stream")
	chunk := fs.Int("chunk", 65536, "write size")
	parse(fs, c, args)
	cfg := c.config()
	ln := listen(*addr)
	serveSessions(ln, cfg, func(sess *smux.Session) {
		var wg sync.WaitGroup
		var failed int32
		var mu sync.Mutex
		for i := 0; i < *nstreams; i++ {
			st, err := sess.OpenStream()
			if err != nil {
				logf("OpenStream #%d: %v", i, err)
				say("opener error: %v", err)
				return
			}
			wg.Add(1)
			go func(st *smux.Stream) {
				defer wg.Done()
				data := pattern(st.ID(), *nbytes)
				for off := 0; off < len(data); {
					end := off + *chunk
					if end > len(data) {
						end = len(data)
					}
					n, err := st.Write(data[off:end])
					off += n
					if err != nil {
						logf("stream %d: write error after %d bytes: %v", st.ID(), off, err)
						mu.Lock()
						failed++
						mu.Unlock()
						break
					}
				}
				if err := st.Close(); err != nil {
					logf("stream %d: close: %v", st.ID(), err)
				}
			}(st)
		}
		wg.Wait()
		say("opener done: %d streams x %d bytes, %d failed", *nstreams, *nbytes, failed)
		// wait until the client goes away (or sends garbage); streams it opens are echoed
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				vlogf("session ended: %v", err)
				return
			}
			go echoStream(st)
		}
	})
}

// ---------------------------------------------------------------------------------------
// slowreader: for every accepted stream, pause -pause-ms, then read -chunk bytes every
// -delay-ms until EOF; then write 16 bytes: u64 LE byte count, u64 LE FNV-1a-64 of the
// data; then close the stream.

func runSlowReader(args []string) {
	fs := flag.NewFlagSet("slowreader", flag.ExitOnError)
	c := addCommon(fs)
	addr := fs.String("listen", "127.0.0.1:0", "listen address")
	pause := fs.Int("pause-ms", 1000, "initial pause before the first read")
	chunk := fs.Int("chunk", 4096, "read size")
	delay := fs.Int("delay-ms", 1, "sleep between reads")
	parse(fs, c, args)
	cfg := c.config()
	ln := listen(*addr)
	serveStreams(ln, cfg, func(st *smux.Stream) {
		defer st.Close()
		time.Sleep(time.Duration(*pause) * time.Millisecond)
		buf := make([]byte, *chunk)
		var count uint64
		h := uint64(fnvOffset)
		for {
			n, err := st.Read(buf)
			count += uint64(n)
			h = fnv1a64(h, buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				logf("stream %d: read error after %d bytes: %v", st.ID(), count, err)
				say("slowreader error: %v", err)
				return
			}
			if *delay > 0 {
				time.Sleep(time.Duration(*delay) * time.Millisecond)
			}
		}
		var out [16]byte
		binary.LittleEndian.PutUint64(out[:8], count)
		binary.LittleEndian.PutUint64(out[8:], h)
		if _, err := st.Write(out[:]); err != nil {
			logf("stream %d: writing result: %v", st.ID(), err)
		}
		say("slowreader stream %d: %d bytes fnv %016x", st.ID(), count, h)
	})
}

// ---------------------------------------------------------------------------------------
// slowwriter: for every accepted stream, write -bytes bytes of pattern(streamID) in
// -chunk writes, close the stream, and print "wrote N bytes on stream ID in MS ms"
// (or "write error ...").  Used against a slowly reading peer: the writer must finish.

func runSlowWriter(args []string) {
	fs := flag.NewFlagSet("slowwriter", flag.ExitOnError)
	c := addCommon(fs)
	addr := fs.String("listen", "127.0.0.1:0", "listen address")
	nbytes := fs.Int("bytes", 2<<20, "bytes to write on each accepted stream")
	chunk := fs.Int("chunk", 65536, "write size")
	parse(fs, c, args)
	cfg := c.config()
	ln := listen(*addr)
	serveStreams(ln, cfg, func(st *smux.Stream) {
		defer st.Close()
		start := time.Now()
		data := pattern(st.ID(), *nbytes)
		for off := 0; off < len(data); {
			end := off + *chunk
			if end > len(data) {
				end = len(data)
			}
			n, err := st.Write(data[off:end])
			off += n
			if err != nil {
				say("write error on stream %d after %d bytes: %v", st.ID(), off, err)
				return
			}
		}
		say("wrote %d bytes on stream %d in %d ms", len(data), st.ID(), time.Since(start).Milliseconds())
	})
}
