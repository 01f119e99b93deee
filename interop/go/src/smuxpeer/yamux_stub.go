//go:build !yamux
// +build !yamux

package main

// Without the yamux build tag (Debian's golang-github-hashicorp-yamux-dev was missing when
// interop/build.sh ran): the yamux roles exist but refuse with noYamux.

import (
	"net"
)

// yamuxLib is empty: this build has no yamux.
const yamuxLib = ""

// noYamux says why there is no yamux and what to do.
const noYamux = "this smuxpeer was built without hashicorp/yamux (install golang-github-hashicorp-yamux-dev, then run interop/build.sh --force)"

// yamuxClient is never called without yamux (bench-client refuses -mux yamux first).
func yamuxClient(conn net.Conn) (streamOpener, func() error, error) {
	fatalf("%s", noYamux)
	return nil, nil, nil
}

func runYamuxBenchServer(args []string) {
	fatalf("%s", noYamux)
}
