package main

// kcptun-style TCP tunnel over one smux session.
//
//   tunnel-client -listen ADDR -server HOST:PORT : one smux CLIENT session (one TCP
//       connection to the tunnel server, re-dialled if it dies); every local TCP
//       connection accepted on ADDR becomes one smux stream.
//   tunnel-server -listen ADDR -target HOST:PORT : smux SERVER on every accepted TCP
//       connection; every accepted stream is connected to a new TCP connection to target.
//
// Bytes are copied both ways.  Half-close:
//   stream EOF (peer FIN)  -> TCP CloseWrite on the local TCP side (reading continues).
//   TCP EOF                -> with -halfclose=close (default): stream.Close() (sends FIN).
//                             smux 1.5.16 has no CloseWrite: Close also drops the stream,
//                             so bytes the far side sends *after* this FIN are lost.
//                             with -halfclose=drain: no FIN is sent until the other
//                             direction has reached EOF; then the stream is closed.
// When both directions are done, the stream and the TCP connection are closed.
//
//   tcp-echo -listen ADDR : plain TCP echo server (no smux), handy as a tunnel target:
//       echoes until EOF, then half-closes (CloseWrite) and closes.

import (
	"flag"
	"io"
	"net"
	"sync"
	"time"

	"github.com/xtaci/smux"
)

func pipeStream(st *smux.Stream, c net.Conn, halfclose string) {
	tcp, _ := c.(*net.TCPConn)
	var wg sync.WaitGroup
	wg.Add(2)
	upDone := make(chan struct{})   // TCP -> stream finished
	downDone := make(chan struct{}) // stream -> TCP finished
	// TCP -> stream
	go func() {
		defer wg.Done()
		defer close(upDone)
		buf := make([]byte, 65536)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := st.Write(buf[:n]); werr != nil {
					vlogf("stream %d: write: %v", st.ID(), werr)
					c.Close()
					return
				}
			}
			if err != nil {
				if err == io.EOF {
					if halfclose == "drain" {
						<-downDone
					}
					st.Close() // FIN
				} else {
					st.Close()
				}
				return
			}
		}
	}()
	// stream -> TCP
	go func() {
		defer wg.Done()
		defer close(downDone)
		buf := make([]byte, 65536)
		for {
			n, err := st.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					vlogf("stream %d: tcp write: %v", st.ID(), werr)
					st.Close()
					c.Close()
					return
				}
			}
			if err != nil {
				if err == io.EOF && tcp != nil {
					tcp.CloseWrite()
				} else {
					c.Close()
				}
				return
			}
		}
	}()
	wg.Wait()
	st.Close()
	c.Close()
}

func runTunnelServer(args []string) {
	fs := flag.NewFlagSet("tunnel-server", flag.ExitOnError)
	c := addCommon(fs)
	addr := fs.String("listen", "127.0.0.1:0", "listen address (smux side)")
	target := fs.String("target", "", "target HOST:PORT for every stream")
	halfclose := fs.String("halfclose", "close", "close|drain (see source)")
	parse(fs, c, args)
	if *target == "" {
		fatalf("-target is required")
	}
	if *halfclose != "close" && *halfclose != "drain" {
		fatalf("-halfclose must be close or drain")
	}
	cfg := c.config()
	ln := listen(*addr)
	serveStreams(ln, cfg, func(st *smux.Stream) {
		tc, err := net.DialTimeout("tcp", *target, 10*time.Second)
		if err != nil {
			logf("dial target %s: %v", *target, err)
			st.Close()
			return
		}
		pipeStream(st, tc, *halfclose)
	})
}

func runTunnelClient(args []string) {
	fs := flag.NewFlagSet("tunnel-client", flag.ExitOnError)
	c := addCommon(fs)
	addr := fs.String("listen", "127.0.0.1:0", "listen address (plain TCP side)")
	server := fs.String("server", "", "tunnel server HOST:PORT")
	halfclose := fs.String("halfclose", "close", "close|drain (see source)")
	parse(fs, c, args)
	if *server == "" {
		fatalf("-server is required")
	}
	if *halfclose != "close" && *halfclose != "drain" {
		fatalf("-halfclose must be close or drain")
	}
	cfg := c.config()

	var mu sync.Mutex
	var sess *smux.Session
	dial := func() (*smux.Session, error) {
		conn, err := net.DialTimeout("tcp", *server, 10*time.Second)
		if err != nil {
			return nil, err
		}
		s, err := smux.Client(conn, cfg)
		if err != nil {
			conn.Close()
			return nil, err
		}
		return s, nil
	}
	getSession := func() (*smux.Session, error) {
		mu.Lock()
		defer mu.Unlock()
		if sess == nil || sess.IsClosed() {
			s, err := dial()
			if err != nil {
				return nil, err
			}
			sess = s
		}
		return sess, nil
	}
	if _, err := getSession(); err != nil {
		fatalf("connecting to tunnel server %s: %v", *server, err)
	}
	ln := listen(*addr)
	acceptLoop(ln, func(conn net.Conn) {
		s, err := getSession()
		if err != nil {
			logf("tunnel server: %v", err)
			conn.Close()
			return
		}
		st, err := s.OpenStream()
		if err != nil {
			logf("OpenStream: %v", err)
			s.Close() // force a re-dial next time
			conn.Close()
			return
		}
		pipeStream(st, conn, *halfclose)
	})
}

func runTCPEcho(args []string) {
	fs := flag.NewFlagSet("tcp-echo", flag.ExitOnError)
	addr := fs.String("listen", "127.0.0.1:0", "listen address")
	parse(fs, nil, args)
	ln := listen(*addr)
	acceptLoop(ln, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 65536)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if tc, ok := c.(*net.TCPConn); ok && err == io.EOF {
					tc.CloseWrite()
				}
				return
			}
		}
	})
}
