package main

// client: smux CLIENT scenarios.  Exit code 0 and "OK <scenario>" on stdout on
// success; exit code 1 and "FAIL <scenario>: <reason>" otherwise (exit code 3 on
// timeout).
//
// Scenarios against an echo server (Go `echo` role or the rsmux echo server):
//   echo      one stream, 100 round trips of "helloN"
//   parallel  -streams streams x -msgs messages concurrently, each echo verified
//   bulk      -bytes (default 64 MiB) of seeded random data written in random-size
//             writes (1..1 MiB) on one stream while the echo is read back concurrently;
//             byte-exact compare; then Close.
// Scenario against a "half-close" server (the rsmux test server; Go 1.5.16 has no
// CloseWrite, so the half-close is exercised from the server side):
//   halfclose client opens a stream, writes u64 LE N (-bytes, default 1 MiB); the server
//             writes N bytes of pattern(streamID) and then half-closes (FIN) while it
//             keeps reading; the client reads exactly N bytes and then EOF, verifies
//             them, then writes -trailer bytes (default 16 KiB) of pattern(streamID+1)
//             on the same stream (the server must still receive them) and closes.
// Scenarios used to self-test the Go server roles (Go vs Go):
//   opened      accept -streams server-opened streams, each must carry -bytes bytes of
//               pattern(streamID) and then EOF           (against `opener`)
//   slowreader  write -bytes of pattern(streamID) and check that the writer finishes
//               (the 16-byte answer cannot be read: 1.5.16 has no half-close)
//                                                        (against `slowreader`)
//   slowwriter  open a stream, read slowly, expect -bytes of pattern(streamID) + EOF
//                                                        (against `slowwriter`)
//   idle        echo once, sleep -idle seconds, echo again (against `idle`)
//   closer      open a stream, expect the session to die (against `closer`)
//   bigstream   on one stream 'W' -bytes (default 64 MiB): read and check them, then EOF;
//               on another 'R' -bytes: write them, check the 16-byte answer
//                                                        (against `bigstream`)

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net"
	"os"
	"sync"
	"time"

	"github.com/xtaci/smux"
)

type clientOpts struct {
	streams int
	msgs    int
	nbytes  int
	trailer int
	seed    int64
	idle    float64
}

func runClient(args []string) {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	c := addCommon(fs)
	addr := fs.String("connect", "", "server address HOST:PORT")
	scenario := fs.String("scenario", "echo", "echo|parallel|bulk|halfclose|opened|slowreader|slowwriter|idle|closer|bigstream")
	timeout := fs.Float64("timeout", 120, "overall timeout in seconds")
	o := clientOpts{}
	fs.IntVar(&o.streams, "streams", 0, "number of streams (parallel: default 1000; opened: default 10)")
	fs.IntVar(&o.msgs, "msgs", 100, "messages per stream (parallel)")
	fs.IntVar(&o.nbytes, "bytes", 0, "bytes (bulk, bigstream: 64 MiB, halfclose: 1 MiB, opened: 1 MiB, slow*: 2 MiB)")
	fs.IntVar(&o.trailer, "trailer", 16384, "halfclose: bytes written after the server's FIN")
	fs.Int64Var(&o.seed, "seed", 1, "random seed (bulk)")
	fs.Float64Var(&o.idle, "idle", 6.5, "idle: seconds to stay idle")
	parse(fs, c, args)
	if *addr == "" {
		fatalf("-connect is required")
	}
	cfg := c.config()

	type scen func(*smux.Session, clientOpts) error
	scenarios := map[string]scen{
		"echo":       scenEcho,
		"parallel":   scenParallel,
		"bulk":       scenBulk,
		"halfclose":  scenHalfClose,
		"opened":     scenOpened,
		"slowreader": scenSlowReader,
		"slowwriter": scenSlowWriter,
		"idle":       scenIdle,
		"closer":     scenCloser,
		"bigstream":  scenBigStream,
	}
	run, ok := scenarios[*scenario]
	if !ok {
		fatalf("unknown scenario %q", *scenario)
	}

	conn, err := net.DialTimeout("tcp", *addr, 10*time.Second)
	if err != nil {
		say("FAIL %s: dial: %v", *scenario, err)
		os.Exit(1)
	}
	sess, err := smux.Client(conn, cfg)
	if err != nil {
		say("FAIL %s: smux.Client: %v", *scenario, err)
		os.Exit(1)
	}

	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- run(sess, o) }()
	select {
	case err := <-done:
		if err != nil {
			say("FAIL %s: %v", *scenario, err)
			os.Exit(1)
		}
		logf("%s ok in %d ms", *scenario, time.Since(start).Milliseconds())
		sess.Close()
		say("OK %s", *scenario)
		os.Exit(0)
	case <-time.After(secs(*timeout)):
		say("FAIL %s: timeout after %.1f s", *scenario, *timeout)
		os.Exit(3)
	}
}

func scenEcho(sess *smux.Session, o clientOpts) error {
	st, err := sess.OpenStream()
	if err != nil {
		return fmt.Errorf("OpenStream: %v", err)
	}
	defer st.Close()
	var sent, got bytes.Buffer
	buf := make([]byte, 64)
	for i := 0; i < 100; i++ {
		msg := []byte(fmt.Sprintf("hello%d", i))
		sent.Write(msg)
		if _, err := st.Write(msg); err != nil {
			return fmt.Errorf("write #%d: %v", i, err)
		}
		if _, err := io.ReadFull(st, buf[:len(msg)]); err != nil {
			return fmt.Errorf("read #%d: %v", i, err)
		}
		if !bytes.Equal(buf[:len(msg)], msg) {
			return fmt.Errorf("echo #%d: got %q want %q", i, buf[:len(msg)], msg)
		}
		got.Write(buf[:len(msg)])
	}
	if !bytes.Equal(sent.Bytes(), got.Bytes()) {
		return errors.New("concatenation mismatch")
	}
	return nil
}

func scenParallel(sess *smux.Session, o clientOpts) error {
	n := o.streams
	if n == 0 {
		n = 1000
	}
	errc := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			st, err := sess.OpenStream()
			if err != nil {
				errc <- fmt.Errorf("stream #%d: OpenStream: %v", i, err)
				return
			}
			defer st.Close()
			buf := make([]byte, 128)
			for j := 0; j < o.msgs; j++ {
				msg := []byte(fmt.Sprintf("stream %d message %d", i, j))
				if _, err := st.Write(msg); err != nil {
					errc <- fmt.Errorf("stream #%d (id %d) write %d: %v", i, st.ID(), j, err)
					return
				}
				if _, err := io.ReadFull(st, buf[:len(msg)]); err != nil {
					errc <- fmt.Errorf("stream #%d (id %d) read %d: %v", i, st.ID(), j, err)
					return
				}
				if !bytes.Equal(buf[:len(msg)], msg) {
					errc <- fmt.Errorf("stream #%d (id %d) msg %d: got %q want %q", i, st.ID(), j, buf[:len(msg)], msg)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		return err // first error
	}
	return nil
}

func scenBulk(sess *smux.Session, o clientOpts) error {
	total := o.nbytes
	if total == 0 {
		total = 64 << 20
	}
	rng := rand.New(rand.NewSource(o.seed))
	data := make([]byte, total)
	rng.Read(data)
	st, err := sess.OpenStream()
	if err != nil {
		return fmt.Errorf("OpenStream: %v", err)
	}
	defer st.Close()
	werr := make(chan error, 1)
	go func() {
		wrng := rand.New(rand.NewSource(o.seed + 1))
		for off := 0; off < total; {
			sz := 1 + wrng.Intn(1<<20)
			if off+sz > total {
				sz = total - off
			}
			n, err := st.Write(data[off : off+sz])
			off += n
			if err != nil {
				werr <- fmt.Errorf("write at %d: %v", off, err)
				return
			}
		}
		werr <- nil
	}()
	got := make([]byte, total)
	rrng := rand.New(rand.NewSource(o.seed + 2))
	for off := 0; off < total; {
		sz := 1 + rrng.Intn(1<<20)
		if off+sz > total {
			sz = total - off
		}
		n, err := io.ReadFull(st, got[off:off+sz])
		off += n
		if err != nil {
			return fmt.Errorf("read at %d: %v", off, err)
		}
	}
	if err := <-werr; err != nil {
		return err
	}
	if !bytes.Equal(data, got) {
		for i := range data {
			if data[i] != got[i] {
				return fmt.Errorf("echo differs at byte %d", i)
			}
		}
	}
	return nil
}

func scenHalfClose(sess *smux.Session, o clientOpts) error {
	n := o.nbytes
	if n == 0 {
		n = 1 << 20
	}
	st, err := sess.OpenStream()
	if err != nil {
		return fmt.Errorf("OpenStream: %v", err)
	}
	defer st.Close()
	var req [8]byte
	binary.LittleEndian.PutUint64(req[:], uint64(n))
	if _, err := st.Write(req[:]); err != nil {
		return fmt.Errorf("write request: %v", err)
	}
	got, err := io.ReadAll(st) // until the server's FIN
	if err != nil {
		return fmt.Errorf("read after %d bytes: %v", len(got), err)
	}
	if len(got) != n {
		return fmt.Errorf("got %d bytes before EOF, want %d", len(got), n)
	}
	if !bytes.Equal(got, pattern(st.ID(), n)) {
		return errors.New("data before EOF differs from pattern(streamID)")
	}
	// the server half-closed; its read side must still work
	if o.trailer > 0 {
		if _, err := st.Write(pattern(st.ID()+1, o.trailer)); err != nil {
			return fmt.Errorf("write after peer FIN: %v", err)
		}
	}
	if err := st.Close(); err != nil { // our FIN
		return fmt.Errorf("close: %v", err)
	}
	// give the server time to drain the trailer before the session (TCP) goes away
	time.Sleep(300 * time.Millisecond)
	return nil
}

func scenOpened(sess *smux.Session, o clientOpts) error {
	n := o.streams
	if n == 0 {
		n = 10
	}
	m := o.nbytes
	if m == 0 {
		m = 1 << 20
	}
	errc := make(chan error, n)
	for i := 0; i < n; i++ {
		st, err := sess.AcceptStream()
		if err != nil {
			return fmt.Errorf("AcceptStream #%d: %v", i, err)
		}
		go func(st *smux.Stream) {
			defer st.Close()
			got, err := io.ReadAll(st)
			if err != nil {
				errc <- fmt.Errorf("stream %d: %v after %d bytes", st.ID(), err, len(got))
				return
			}
			if !bytes.Equal(got, pattern(st.ID(), m)) {
				errc <- fmt.Errorf("stream %d: %d bytes, pattern mismatch", st.ID(), len(got))
				return
			}
			errc <- nil
		}(st)
	}
	for i := 0; i < n; i++ {
		if err := <-errc; err != nil {
			return err
		}
	}
	return nil
}

func scenSlowReader(sess *smux.Session, o clientOpts) error {
	// Without CloseWrite (smux 1.5.16) the Go client cannot signal EOF and still read
	// the answer, so this only checks that the writer completes against a slow reader.
	m := o.nbytes
	if m == 0 {
		m = 2 << 20
	}
	st, err := sess.OpenStream()
	if err != nil {
		return fmt.Errorf("OpenStream: %v", err)
	}
	defer st.Close()
	if _, err := st.Write(pattern(st.ID(), m)); err != nil {
		return fmt.Errorf("write: %v", err)
	}
	return nil
}

func scenSlowWriter(sess *smux.Session, o clientOpts) error {
	m := o.nbytes
	if m == 0 {
		m = 2 << 20
	}
	st, err := sess.OpenStream()
	if err != nil {
		return fmt.Errorf("OpenStream: %v", err)
	}
	defer st.Close()
	time.Sleep(500 * time.Millisecond)
	buf := make([]byte, 4096)
	var got []byte
	for {
		n, err := st.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read after %d bytes: %v", len(got), err)
		}
		time.Sleep(time.Millisecond)
	}
	if !bytes.Equal(got, pattern(st.ID(), m)) {
		return fmt.Errorf("got %d bytes, pattern mismatch", len(got))
	}
	return nil
}

func echoOnce(st *smux.Stream, msg string) error {
	if _, err := st.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(st, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo mismatch %q vs %q", buf, msg)
	}
	return nil
}

func scenIdle(sess *smux.Session, o clientOpts) error {
	st, err := sess.OpenStream()
	if err != nil {
		return fmt.Errorf("OpenStream: %v", err)
	}
	defer st.Close()
	if err := echoOnce(st, "before idle"); err != nil {
		return fmt.Errorf("first echo: %v", err)
	}
	time.Sleep(secs(o.idle))
	if sess.IsClosed() {
		return errors.New("session closed while idle")
	}
	if err := echoOnce(st, "after idle"); err != nil {
		return fmt.Errorf("echo after idle: %v", err)
	}
	return nil
}

func scenCloser(sess *smux.Session, o clientOpts) error {
	st, err := sess.OpenStream()
	if err != nil {
		return fmt.Errorf("OpenStream: %v", err)
	}
	if err := echoOnce(st, "ping"); err != nil {
		return fmt.Errorf("echo: %v", err)
	}
	if _, err := sess.AcceptStream(); err == nil {
		return errors.New("AcceptStream succeeded on a session the peer closed")
	}
	buf := make([]byte, 16)
	if n, err := st.Read(buf); err == nil {
		return fmt.Errorf("stream read returned %d bytes and no error", n)
	}
	return nil
}

func scenBigStream(sess *smux.Session, o clientOpts) error {
	n := uint64(o.nbytes)
	if n == 0 {
		n = 64 << 20
	}
	const chunk = 128 << 10
	command := func(st *smux.Stream, c byte) error {
		var cmd [9]byte
		cmd[0] = c
		binary.LittleEndian.PutUint64(cmd[1:], n)
		_, err := st.Write(cmd[:])
		return err
	}
	// 'W': the server writes, we check
	st, err := sess.OpenStream()
	if err != nil {
		return fmt.Errorf("OpenStream: %v", err)
	}
	if err := command(st, 'W'); err != nil {
		return fmt.Errorf("W: writing the command: %v", err)
	}
	got, mismatch, err := bigRead(st, n, chunk)
	if err != nil {
		return fmt.Errorf("W: read error after %d bytes: %v", got, err)
	}
	if mismatch != math.MaxUint64 {
		return fmt.Errorf("W: wrong byte at offset %d", mismatch)
	}
	if r, err := st.Read(make([]byte, 1)); r != 0 || err != io.EOF {
		return fmt.Errorf("W: expected EOF after %d bytes, got %d bytes, %v", n, r, err)
	}
	st.Close()
	// 'R': we write, the server checks and answers
	st, err = sess.OpenStream()
	if err != nil {
		return fmt.Errorf("OpenStream: %v", err)
	}
	defer st.Close()
	if err := command(st, 'R'); err != nil {
		return fmt.Errorf("R: writing the command: %v", err)
	}
	if sent, err := bigWrite(st, n, chunk); err != nil {
		return fmt.Errorf("R: write error after %d bytes: %v", sent, err)
	}
	var answer [16]byte
	if _, err := io.ReadFull(st, answer[:]); err != nil {
		return fmt.Errorf("R: reading the answer: %v", err)
	}
	count := binary.LittleEndian.Uint64(answer[:8])
	first := binary.LittleEndian.Uint64(answer[8:])
	if count != n || first != math.MaxUint64 {
		return fmt.Errorf("R: server read %d of %d bytes, first mismatch %d", count, n, first)
	}
	return nil
}
