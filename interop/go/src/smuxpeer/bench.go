package main

// Benchmark roles.
//
// bench-server -listen ADDR : smux server; every accepted stream starts with one command
// byte from the client:
//   'G' u64le N   server writes N bytes (128 KiB writes) and then waits for the next
//                 command on the same stream ('G' or 'S'); EOF ends the stream.
//   'S' u64le N   server reads exactly N bytes, then answers u64le N; next command.
//   'P'           server answers one byte 'P', then reads until EOF and closes.
// bench-client -connect ADDR -mode one|many|openclose|echo -seconds S [-json]
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
// The result is one line; with -json a JSON object:
//   {"impl":"go","lib":"xtaci/smux v1.5.16","mode":"one","dir":"down","version":1,
//    "streams":1,"seconds":5.001,"bytes":123,"mb_per_s":1234.5}
//   {"impl":"go",...,"mode":"openclose","ops":1000,"us_per_op":45.6}
// (MB = 10^6 bytes)

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
	"time"

	"github.com/xtaci/smux"
)

const benchIOSize = 128 << 10

func benchServeStream(st *smux.Stream) {
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
	serveStreams(ln, cfg, benchServeStream)
}

// benchTransfer runs request/response rounds on one stream until deadline; returns bytes moved.
func benchTransfer(st *smux.Stream, dir string, chunk uint64, deadline time.Time, counter *int64) error {
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
	parse(fs, c, args)
	if *addr == "" {
		fatalf("-connect is required")
	}
	if *dir != "down" && *dir != "up" {
		fatalf("-dir must be down or up")
	}
	cfg := c.config()
	conn, err := net.DialTimeout("tcp", *addr, 10*time.Second)
	if err != nil {
		fatalf("dial: %v", err)
	}
	sess, err := smux.Client(conn, cfg)
	if err != nil {
		fatalf("smux.Client: %v", err)
	}
	defer sess.Close()

	res := map[string]interface{}{
		"impl":    "go",
		"lib":     "xtaci/smux v1.5.16",
		"mode":    *mode,
		"version": c.ver,
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
		sts := make([]*smux.Stream, n)
		for i := range sts {
			if sts[i], err = sess.OpenStream(); err != nil {
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
			go func(st *smux.Stream) {
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
			fmt.Printf("go %s %s v%d: %d streams, %d bytes in %.3f s = %.1f MB/s\n", *mode, *dir, c.ver, n, total, el, float64(total)/el/1e6)
		}
	case "echo":
		n := 1
		if *streams > 0 {
			n = *streams
		}
		total, el, err := benchEcho(sess, n, dur)
		if err != nil {
			fatalf("echo: %v", err)
		}
		res["streams"] = n
		res["seconds"] = el
		res["bytes"] = total
		res["mb_per_s"] = float64(total) / el / 1e6
		if !*asJSON {
			fmt.Printf("go echo v%d: %d streams, %d bytes in %.3f s = %.1f MB/s\n", c.ver, n, total, el, float64(total)/el/1e6)
		}
	case "openclose":
		ops := 0
		one := []byte{'P'}
		buf := make([]byte, 1)
		start := time.Now()
		deadline := start.Add(dur)
		for time.Now().Before(deadline) {
			st, err := sess.OpenStream()
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
			fmt.Printf("go openclose v%d: %d ops in %.3f s = %.1f us/op\n", c.ver, ops, el, el*1e6/float64(ops))
		}
	default:
		fatalf("unknown mode %q", *mode)
	}
	if *asJSON {
		b, _ := json.Marshal(res)
		os.Stdout.Write(append(b, '\n'))
	}
}

// benchEcho runs n duplex echo streams on sess for dur: per stream one goroutine writes
// 128 KiB writes while another reads the echo. Once dur is over each writer waits until
// everything it sent came back (Go smux drops a v2 stream's unsent tail once the peer's FIN
// arrived, so the FIN goes last), then closes. Returns the bytes echoed and the seconds.
func benchEcho(sess *smux.Session, n int, dur time.Duration) (int64, float64, error) {
	sts := make([]*smux.Stream, n)
	for i := range sts {
		st, err := sess.OpenStream()
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
		go func(st *smux.Stream) {
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
		go func(st *smux.Stream) {
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
