#!/usr/bin/env bash
# Builds the Go reference peer (interop/go/src/smuxpeer) into interop/go/bin/smuxpeer
# against the smux package Debian ships (golang-github-xtaci-smux-dev, v1.5.16), in
# GOPATH mode (no network, no go.mod). When Debian's hashicorp/yamux
# (golang-github-hashicorp-yamux-dev) is there too, with the build tag `yamux`: the bench's
# yamux roles (yamux.go); without it they refuse with a message (yamux_stub.go).
#
#   interop/build.sh              build if out of date (quick no-op otherwise)
#   interop/build.sh --force      always rebuild
#   interop/build.sh --no-yamux   build without yamux into interop/go/bin/smuxpeer-noyamux
#                                 (the bench tests check what such a peer reports)
#
# Environment: GO (go binary, default `go`), SMUX_GOPATH_SRC (directory that contains
# github.com/xtaci/smux, default /usr/share/gocode/src).
# Safe to run concurrently (flock), prints the binary path on success.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
godir="$here/go"
bin="$godir/bin/smuxpeer"
src="$godir/src/smuxpeer"
gopath="$godir/.gopath"
gosrc="${SMUX_GOPATH_SRC:-/usr/share/gocode/src}"
GO="${GO:-go}"

die() { echo "interop/build.sh: ERROR: $*" >&2; exit 1; }

force=0
yamux=1
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        --no-yamux) yamux=0; bin="$godir/bin/smuxpeer-noyamux" ;;
        *) die "unknown argument '$arg' (--force, --no-yamux)" ;;
    esac
done

mkdir -p "$godir/bin" "$gopath/src"
exec 9>"$godir/.build.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

# On a fresh Debian machine, install Go, Debian's smux and yamux (as root) so that the test
# suite runs with no setup; otherwise say what is missing. yamux is optional: when it alone
# is missing and cannot be installed, the peer is built without it (tried once: a marker
# file keeps later runs from calling apt-get again).
have_toolchain() {
    command -v "$GO" >/dev/null 2>&1 && [ -f "$gosrc/github.com/xtaci/smux/session.go" ]
}
have_yamux() { [ -f "$gosrc/github.com/hashicorp/yamux/session.go" ]; }
yamux_failed="$godir/.yamux-install-failed"
can_apt() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ -z "${RSMUX_NO_APT:-}" ]
}
if ! have_toolchain && can_apt; then
    echo "interop/build.sh: installing golang-go, golang-github-xtaci-smux-dev and golang-github-hashicorp-yamux-dev" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        golang-go golang-github-xtaci-smux-dev golang-github-hashicorp-yamux-dev; } >&2 \
        || die "apt-get install failed"
elif [ "$yamux" = 1 ] && ! have_yamux && [ ! -e "$yamux_failed" ] && can_apt; then
    echo "interop/build.sh: installing golang-github-hashicorp-yamux-dev" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        golang-github-hashicorp-yamux-dev; } >&2; then
        echo "interop/build.sh: could not install yamux; building without it" >&2
        : >"$yamux_failed"
    fi
fi
command -v "$GO" >/dev/null 2>&1 || die "'$GO' not found in PATH. Install Go: apt-get install -y golang-go golang-github-xtaci-smux-dev"
[ -f "$gosrc/github.com/xtaci/smux/session.go" ] || die "smux sources not found at $gosrc/github.com/xtaci/smux. Install: apt-get install -y golang-github-xtaci-smux-dev (or set SMUX_GOPATH_SRC)"
[ -f "$src/main.go" ] || die "peer sources missing: $src"

tags=""
if [ "$yamux" = 1 ] && have_yamux; then
    tags="yamux"
fi
# The tags the binary was built with, beside it: a peer built before yamux was installed is
# rebuilt once it is.
stamp="$bin.tags"

uptodate() {
    [ -x "$bin" ] || return 1
    [ "$(cat "$stamp" 2>/dev/null || echo none)" = "$tags" ] || return 1
    # any source (or this script) newer than the binary?
    [ -z "$(find "$src" "$here/build.sh" -newer "$bin" -print -quit)" ]
}

if [ "$force" = 0 ] && uptodate; then
    echo "$bin"
    exit 0
fi

# temp GOPATH: .gopath/src/smuxpeer -> our sources, .gopath/src/github.com -> Debian's tree
ln -sfn "$src" "$gopath/src/smuxpeer"
ln -sfn "$gosrc/github.com" "$gopath/src/github.com"

tmp="$bin.tmp.$$"
export GO111MODULE=off GOPATH="$gopath" GOFLAGS= CGO_ENABLED=0
export GOCACHE="${GOCACHE:-$gopath/cache}"
if ! out="$(cd "$gopath/src/smuxpeer" && "$GO" build -tags "$tags" -o "$tmp" smuxpeer 2>&1)"; then
    rm -f "$tmp"
    echo "$out" >&2
    die "go build failed (GOPATH=$gopath, $("$GO" version 2>&1))"
fi
mv -f "$tmp" "$bin"
echo "$tags" >"$stamp"
echo "$bin"
