#!/usr/bin/env bash
# Go-vs-Go self test of the smuxpeer roles (no Rust involved).
#   interop/selftest.sh [quick]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$("$here/build.sh")"
quick="${1:-}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
fail=0

# start_server OUTFILE ARGS... -> sets $addr
start_server() {
    local out="$1"; shift
    "$bin" "$@" >"$out" 2>>"$out.err" &
    pids+=($!)
    for _ in $(seq 1 100); do
        if grep -q '^listening on ' "$out" 2>/dev/null; then
            addr="$(sed -n 's/^listening on //p' "$out" | head -1)"
            return 0
        fi
        sleep 0.05
    done
    echo "server $* did not start" >&2; cat "$out.err" >&2; return 1
}

check() { # name cmd...
    local name="$1"; shift
    local t0=$(date +%s.%N)
    if out="$("$@" 2>&1)"; then
        printf 'PASS %-40s %6.2fs  %s\n' "$name" "$(echo "$(date +%s.%N) - $t0" | bc)" "$(echo "$out" | tail -1)"
    else
        printf 'FAIL %-40s\n%s\n' "$name" "$out"; fail=1
    fi
}

tmp="$(mktemp -d)"
for v in 1 2; do
    start_server "$tmp/echo$v" echo -ver $v -quiet; echo_addr=$addr
    check "v$v echo" "$bin" client -ver $v -connect $echo_addr -scenario echo -timeout 20
    check "v$v parallel 1000x100" "$bin" client -ver $v -connect $echo_addr -scenario parallel -timeout 60
    check "v$v bulk 64MiB" "$bin" client -ver $v -connect $echo_addr -scenario bulk -seed $((v * 7)) -timeout 60
    start_server "$tmp/opener$v" opener -ver $v -streams 20 -bytes 1048576
    check "v$v server-opened 20x1MiB" "$bin" client -ver $v -connect $addr -scenario opened -streams 20 -bytes 1048576 -timeout 30
    start_server "$tmp/sr$v" slowreader -ver $v
    check "v$v slowreader" "$bin" client -ver $v -connect $addr -scenario slowreader -timeout 30
    start_server "$tmp/sw$v" slowwriter -ver $v
    check "v$v slowwriter" "$bin" client -ver $v -connect $addr -scenario slowwriter -timeout 30
    start_server "$tmp/big$v" bigstream -ver $v
    check "v$v bigstream 64MiB W+R" "$bin" client -ver $v -connect $addr -scenario bigstream -timeout 60
    start_server "$tmp/closer$v" closer -ver $v -after-ms 300
    check "v$v closer" "$bin" client -ver $v -connect $addr -scenario closer -timeout 10
    if [ "$quick" != quick ]; then
        start_server "$tmp/idle$v" idle -ver $v -keepalive 1 -keepalive-timeout 2
        check "v$v idle 6.5s (keepalive 1/2)" "$bin" client -ver $v -keepalive 1 -keepalive-timeout 2 -connect $addr -scenario idle -timeout 20
        # a "closed ... EOF" line after the client exited is expected; a keepalive close is not
        if grep -q '^closed.*closed pipe' "$tmp/idle$v"; then echo "FAIL v$v idle: server reported: $(cat "$tmp/idle$v")"; fail=1; fi
    fi
    # tunnel: client -> tunnel-client -> tunnel-server -> plain TCP echo
    start_server "$tmp/tcpecho$v" tcp-echo; tcpecho=$addr
    start_server "$tmp/ts$v" tunnel-server -ver $v -target $tcpecho; ts=$addr
    start_server "$tmp/tc$v" tunnel-client -ver $v -server $ts; tc=$addr
    check "v$v tunnel echo (python)" python3 -c "
import socket,os,sys
data=os.urandom(3<<20)
s=socket.create_connection(('${tc%:*}',${tc##*:})); s.settimeout(20)
import threading
got=bytearray()
def rd():
    while len(got)<len(data):
        b=s.recv(65536)
        if not b: break
        got.extend(b)
t=threading.Thread(target=rd); t.start(); s.sendall(data); t.join()
assert bytes(got)==data, (len(got),len(data))
s.shutdown(socket.SHUT_WR)
assert s.recv(10)==b''
print('tunnel ok', len(got))
"
    start_server "$tmp/bs$v" bench-server -ver $v; bs=$addr
    for m in one many openclose; do
        check "v$v bench $m" "$bin" bench-client -ver $v -connect $bs -mode $m -seconds 1 -json
    done
    check "v$v bench echo 16" "$bin" bench-client -ver $v -connect $echo_addr -mode echo -streams 16 -seconds 1 -json
done
if "$bin" features | grep -q '"yamux":"'; then
    start_server "$tmp/ybs" yamux-bench-server; ybs=$addr
    for m in one many openclose; do
        check "yamux bench $m" "$bin" bench-client -mux yamux -connect $ybs -mode $m -dir up -seconds 1 -json
    done
else
    echo "SKIP yamux bench (this build has no yamux: $("$bin" features))"
fi
rm -rf "$tmp"
[ $fail = 0 ] && echo "ALL PASS" || { echo "SOME FAILED"; exit 1; }
