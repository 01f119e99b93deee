#!/usr/bin/env bash
# Fuzz smoke run: every target for SECONDS (default 20) on stable Rust, no sanitizer.
#
#   bash fuzz/run.sh [SECONDS]
#
# Installs cargo-fuzz if missing, copies the committed seeds (seeds/<target>/) and saved crash
# reproductions (regressions/<target>/) into the working corpus (corpus/<target>/, ignored by
# git), then runs each target. libFuzzer replays the whole corpus first, so every regression
# input is re-checked on every run. Exits non-zero on the first crash; the crashing input is
# left in artifacts/<target>/.
set -euo pipefail

SECONDS_PER_TARGET="${1:-20}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

targets=(frame_decoder session_ops)

# One build for all targets (debug assertions and overflow checks are on by default).
cargo fuzz build -s none

for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    for src in "seeds/$t" "regressions/$t"; do
        if [ -d "$src" ]; then
            find "$src" -maxdepth 1 -type f ! -name '*.md' -exec cp -f {} "corpus/$t/" \;
        fi
    done
    echo "=== fuzz $t for ${SECONDS_PER_TARGET}s ($(ls "corpus/$t" | wc -l) corpus files)"
    cargo fuzz run -s none "$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1
done
echo "=== fuzz smoke: no crash"
