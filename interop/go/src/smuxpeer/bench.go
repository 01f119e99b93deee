package main

// Benchmark roles.
//
// bench-server -listen ADDR : smux server; every accepted stream starts with one command
// byte from the client:
//   'G' u64le N   server writes N bytes (128 KiB writes) and then waits for the next
//                 command on the same stream ('G' or 'S'); EOF ends the stream.
//   'S' u64le N   server reads exactly N bytes, then answers u64le N; next command.
//   'P'           server answers one byte 'P', then reads until EOF and closes.
// bench-client -connect ADDR -mode one|many|openclose|echo -seconds S [-mux smux|yamux] [-json]
//   one        1 stream, repeated 'G' requests of -chunk bytes (default 16 MiB), read
//              with a 128 KiB buffer, for S seconds -> MB/s (server -> client)
//   many       -streams (default 100) streams doing the same concurrently (-chunk
//              default 1 MiB per request) -> aggregate MB/s
//   openclose  loop: OpenStream, write 'P', read 1 byte, Close -> us/op
//   -dir up    for one/many: use 'S' (client -> server) instead of 'G'
//   echo       against an echo server (smuxpeer echo, rsmux echo): -streams (default 1)
//              streams, each with a writer sending 128 KiB writes and a reader counting
//              what comes back, both at once, for S seconds; then each writer waits for
//              its echo to catch up and half-closes -> MB/s echoed (one direction counted)
//   -mux yamux one session of hashicorp/yamux (DefaultConfig) instead of smux, against
//              yamux-bench-server (yamux.go; a peer built without the yamux tag refuses);
//              the smux flags are then ignored
// The result is one line; with -json a JSON object:
//   {"impl":"go","lib":"xtaci/smux v1.5.16","mux":"smux","mode":"one","dir":"down",
//    "version":1,"streams":1,"seconds":5.001,"bytes":123,"mb_per_s":1234.5,"cpu_s":1.23}
//   {"impl":"go",...,"mode":"openclose","ops":1000,"us_per_op":45.6,"cpu_s":0.4}
// cpu_s is this process's CPU time (user + system, getrusage RUSAGE_SELF) when it prints
// the result: everything the client spent, start-up included. (MB = 10^6 bytes)
//
// features: prints one JSON line saying which multiplexers this build has, e.g.
//   {"smux":"xtaci/smux v1.5.16","yamux":"hashicorp/yamux ..."} ("yamux":null without it)

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xtaci/smux"
)

const benchIOSize = 128 << 10

// smuxLib names the smux this peer is built against.
const smuxLib = "xtaci/smux v1.5.16"

// benchServeStream serves the bench protocol on one stream (smux's or yamux's).
func benchServeStream(st io.ReadWriteCloser) {
	defer st.Close()
	var cmd [9]byte
	wbuf := make([]byte, benchIOSize)
	for i := range wbuf {
		wbuf[i] = byte(i * 7)
	}
	rbuf := make([]byte, benchIOSize)
	for {
		if _, err := io.ReadFull(st, cmd[:1]); err != nil {
			return
		}
		switch cmd[0] {
		case 'P':
			if _, err := st.Write(cmd[:1]); err != nil {
				return
			}
			for {
				if _, err := st.Read(rbuf); err != nil {
					return
				}
			}
		case 'G', 'S':
			if _, err := io.ReadFull(st, cmd[1:9]); err != nil {
				return
			}
			n := binary.LittleEndian.Uint64(cmd[1:9])
			if cmd[0] == 'G' {
				for n > 0 {
					sz := uint64(len(wbuf))
					if sz > n {
						sz = n
					}
					if _, err := st.Write(wbuf[:sz]); err != nil {
						return
					}
					n -= sz
				}
			} else {
				total := n
				for n > 0 {
					sz := uint64(len(rbuf))
					if sz > n {
						sz = n
					}
					m, err := st.Read(rbuf[:sz])
					n -= uint64(m)
					if err != nil {
						return
					}
				}
				var ans [8]byte
				binary.LittleEndian.PutUint64(ans[:], total)
				if _, err := st.Write(ans[:]); err != nil {
					return
				}
			}
		default:
			logf("bench: unknown command byte %#x", cmd[0])
			return
		}
	}
}

func runBenchServer(args []string) {
	fs := flag.NewFlagSet("bench-server", flag.ExitOnError)
	c := addCommon(fs)
	addr := fs.String("listen", "127.0.0.1:0", "listen address")
	parse(fs, c, args)
	cfg := c.config()
	ln := listen(*addr)
	serveStreams(ln, cfg, func(st *smux.Stream) { benchServeStream(st) })
}

// streamOpener opens a stream of a client session of either multiplexer.
type streamOpener func() (io.ReadWriteCloser, error)

// cpuSeconds is this process's CPU time so far, user + system.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// runFeatures prints which multiplexers this build has.
func runFeatures(args []string) {
	fs := flag.NewFlagSet("features", flag.ExitOnError)
	parse(fs, nil, args)
	res := map[string]interface{}{"smux": smuxLib, "yamux": nil}
	if yamuxLib != "" {
		res["yamux"] = yamuxLib
	}
	b, _ := json.Marshal(res)
	os.Stdout.Write(append(b, '\n'))
}

// benchTransfer runs request/response rounds on one stream until deadline; returns bytes moved.
func benchTransfer(st io.ReadWriter, dir string, chunk uint64, deadline time.Time, counter *int64) error {
	var cmd [9]byte
	buf := make([]byte, benchIOSize)
	for i := range buf {
		buf[i] = byte(i * 3)
	}
	for time.Now().Before(deadline) {
		if dir == "down" {
			cmd[0] = 'G'
		} else {
			cmd[0] = 'S'
		}
		binary.LittleEndian.PutUint64(cmd[1:], chunk)
		if _, err := st.Write(cmd[:]); err != nil {
			return err
		}
		if dir == "down" {
			for n := chunk; n > 0; {
				sz := uint64(len(buf))
				if sz > n {
					sz = n
				}
				m, err := st.Read(buf[:sz])
				n -= uint64(m)
				atomic.AddInt64(counter, int64(m))
				if err != nil {
					return err
				}
			}
		} else {
			for n := chunk; n > 0; {
				sz := uint64(len(buf))
				if sz > n {
					sz = n
				}
				m, err := st.Write(buf[:sz])
				n -= uint64(m)
				if err != nil {
					return err
				}
			}
			var ans [8]byte
			if _, err := io.ReadFull(st, ans[:]); err != nil {
				return err
			}
			if binary.LittleEndian.Uint64(ans[:]) != chunk {
				return errors.New("bad sink answer")
			}
			atomic.AddInt64(counter, int64(chunk))
		}
	}
	return nil
}

func runBenchClient(args []string) {
	fs := flag.NewFlagSet("bench-client", flag.ExitOnError)
	c := addCommon(fs)
	addr := fs.String("connect", "", "bench server HOST:PORT")
	mode := fs.String("mode", "one", "one|many|openclose|echo")
	dir := fs.String("dir", "down", "one/many: down (server->client) or up (client->server)")
	seconds := fs.Float64("seconds", 5, "duration")
	streams := fs.Int("streams", 0, "many: number of streams (default 100); echo: (default 1)")
	chunk := fs.Int("chunk", 0, "bytes per request (one: 16 MiB, many: 1 MiB)")
	asJSON := fs.Bool("json", false, "print one JSON line")
	mux := fs.String("mux", "smux", "smux, or yamux (hashicorp/yamux, DefaultConfig; the smux flags are ignored)")
	parse(fs, c, args)
	if *addr == "" {
		fatalf("-connect is required")
	}
	if *dir != "down" && *dir != "up" {
		fatalf("-dir must be down or up")
	}
	if *mux != "smux" && *mux != "yamux" {
		fatalf("-mux must be smux or yamux, not %q", *mux)
	}
	if *mux == "yamux" && yamuxLib == "" {
		fatalf("-mux yamux: %s", noYamux)
	}
	switch *mode {
	case "one", "many", "openclose", "echo":
	default:
		fatalf("unknown mode %q (one, many, openclose or echo)", *mode)
	}
	var cfg *smux.Config
	if *mux == "smux" {
		cfg = c.config()
	}
	conn, err := net.DialTimeout("tcp", *addr, 10*time.Second)
	if err != nil {
		fatalf("dial: %v", err)
	}
	res := map[string]interface{}{
		"impl": "go",
		"mux":  *mux,
		"mode": *mode,
	}
	var open streamOpener
	if *mux == "yamux" {
		var closeSess func() error
		if open, closeSess, err = yamuxClient(conn); err != nil {
			fatalf("yamux.Client: %v", err)
		}
		defer closeSess()
		res["lib"] = yamuxLib
	} else {
		sess, err := smux.Client(conn, cfg)
		if err != nil {
			fatalf("smux.Client: %v", err)
		}
		defer sess.Close()
		open = func() (io.ReadWriteCloser, error) { return sess.OpenStream() }
		res["lib"] = smuxLib
		res["version"] = c.ver
	}
	dur := secs(*seconds)
	switch *mode {
	case "one", "many":
		n := 1
		ch := uint64(16 << 20)
		if *mode == "many" {
			n = 100
			if *streams > 0 {
				n = *streams
			}
			ch = 1 << 20
		}
		if *chunk > 0 {
			ch = uint64(*chunk)
		}
		sts := make([]io.ReadWriteCloser, n)
		for i := range sts {
			if sts[i], err = open(); err != nil {
				fatalf("OpenStream: %v", err)
			}
		}
		var total int64
		var wg sync.WaitGroup
		errc := make(chan error, n)
		start := time.Now()
		deadline := start.Add(dur)
		for _, st := range sts {
			wg.Add(1)
			go func(st io.ReadWriteCloser) {
				defer wg.Done()
				if err := benchTransfer(st, *dir, ch, deadline, &total); err != nil {
					errc <- err
				}
			}(st)
		}
		wg.Wait()
		el := time.Since(start).Seconds()
		select {
		case err := <-errc:
			fatalf("transfer: %v", err)
		default:
		}
		for _, st := range sts {
			st.Close()
		}
		res["dir"] = *dir
		res["streams"] = n
		res["seconds"] = el
		res["bytes"] = total
		res["mb_per_s"] = float64(total) / el / 1e6
		if !*asJSON {
			fmt.Printf("go %s %s %s: %d streams, %d bytes in %.3f s = %.1f MB/s\n", *mux, *mode, *dir, n, total, el, float64(total)/el/1e6)
		}
	case "echo":
		n := 1
		if *streams > 0 {
			n = *streams
		}
		total, el, err := benchEcho(open, n, dur)
		if err != nil {
			fatalf("echo: %v", err)
		}
		res["streams"] = n
		res["seconds"] = el
		res["bytes"] = total
		res["mb_per_s"] = float64(total) / el / 1e6
		if !*asJSON {
			fmt.Printf("go %s echo: %d streams, %d bytes in %.3f s = %.1f MB/s\n", *mux, n, total, el, float64(total)/el/1e6)
		}
	case "openclose":
		ops := 0
		one := []byte{'P'}
		buf := make([]byte, 1)
		start := time.Now()
		deadline := start.Add(dur)
		for time.Now().Before(deadline) {
			st, err := open()
			if err != nil {
				fatalf("OpenStream: %v", err)
			}
			if _, err := st.Write(one); err != nil {
				fatalf("write: %v", err)
			}
			if _, err := io.ReadFull(st, buf); err != nil {
				fatalf("read: %v", err)
			}
			st.Close()
			ops++
		}
		el := time.Since(start).Seconds()
		res["seconds"] = el
		res["ops"] = ops
		res["us_per_op"] = el * 1e6 / float64(ops)
		if !*asJSON {
			fmt.Printf("go %s openclose: %d ops in %.3f s = %.1f us/op\n", *mux, ops, el, el*1e6/float64(ops))
		}
	}
	res["cpu_s"] = cpuSeconds()
	if *asJSON {
		b, _ := json.Marshal(res)
		os.Stdout.Write(append(b, '\n'))
	}
}

// benchEcho runs n duplex echo streams opened with open for dur: per stream one goroutine writes
// 128 KiB writes while another reads the echo. Once dur is over each writer waits until
// everything it sent came back (Go smux drops a v2 stream's unsent tail once the peer's FIN
// arrived, so the FIN goes last), then closes. Returns the bytes echoed and the seconds.
func benchEcho(open streamOpener, n int, dur time.Duration) (int64, float64, error) {
	sts := make([]io.ReadWriteCloser, n)
	for i := range sts {
		st, err := open()
		if err != nil {
			return 0, 0, err
		}
		sts[i] = st
	}
	var total int64
	var stop int32
	var wg sync.WaitGroup
	errc := make(chan error, 2*n)
	start := time.Now()
	for _, st := range sts {
		var got int64
		caught := make(chan struct{}, 1)
		wg.Add(2)
		go func(st io.ReadWriteCloser) {
			defer wg.Done()
			buf := make([]byte, benchIOSize)
			for i := range buf {
				buf[i] = byte(i * 5)
			}
			var sent int64
			for atomic.LoadInt32(&stop) == 0 {
				if _, err := st.Write(buf); err != nil {
					errc <- err
					return
				}
				sent += int64(len(buf))
			}
			for atomic.LoadInt64(&got) < sent {
				<-caught
			}
			st.Close()
		}(st)
		go func(st io.ReadWriteCloser) {
			defer wg.Done()
			buf := make([]byte, benchIOSize)
			for {
				m, err := st.Read(buf)
				atomic.AddInt64(&total, int64(m))
				atomic.AddInt64(&got, int64(m))
				select {
				case caught <- struct{}{}:
				default:
				}
				if err != nil {
					// Close (after the echo caught up) ends the reader too.
					if err != io.EOF && err != io.ErrClosedPipe {
						errc <- err
					}
					return
				}
			}
		}(st)
	}
	time.Sleep(dur)
	atomic.StoreInt32(&stop, 1)
	wg.Wait()
	el := time.Since(start).Seconds()
	select {
	case err := <-errc:
		return 0, 0, err
	default:
	}
	return atomic.LoadInt64(&total), el, nil
}
