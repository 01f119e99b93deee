//go:build yamux
// +build yamux

package main

// The hashicorp/yamux side of the bench (built with -tags yamux, which interop/build.sh
// passes when Debian's golang-github-hashicorp-yamux-dev is installed):
//
// yamux-bench-server -listen ADDR : a yamux server session (DefaultConfig) per TCP
// connection; every accepted stream speaks the bench protocol of bench-server ('G', 'S',
// 'P', see bench.go). bench-client -mux yamux is its client.

import (
	"flag"
	"io"
	"net"

	"github.com/hashicorp/yamux"
)

// yamuxLib names the yamux this peer is built against (Debian's snapshot).
const yamuxLib = "hashicorp/yamux 0.0+git20190923 (Debian)"

// noYamux is only used by the stub; here yamux is built in.
const noYamux = ""

// yamuxConfig is yamux's DefaultConfig with its logging discarded.
func yamuxConfig() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	return cfg
}

// yamuxClient starts a yamux client session on conn: its stream opener and its Close.
func yamuxClient(conn net.Conn) (streamOpener, func() error, error) {
	sess, err := yamux.Client(conn, yamuxConfig())
	if err != nil {
		return nil, nil, err
	}
	open := func() (io.ReadWriteCloser, error) { return sess.OpenStream() }
	return open, sess.Close, nil
}

func runYamuxBenchServer(args []string) {
	fs := flag.NewFlagSet("yamux-bench-server", flag.ExitOnError)
	addr := fs.String("listen", "127.0.0.1:0", "listen address")
	q := fs.Bool("quiet", false, "less diagnostics on stderr")
	parse(fs, nil, args)
	quiet = *q
	ln := listen(*addr)
	acceptLoop(ln, func(conn net.Conn) {
		sess, err := yamux.Server(conn, yamuxConfig())
		if err != nil {
			logf("yamux.Server: %v", err)
			conn.Close()
			return
		}
		defer sess.Close()
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				vlogf("yamux session ended: %v", err)
				return
			}
			go benchServeStream(st)
		}
	})
}
