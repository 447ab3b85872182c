#!/usr/bin/env bash
# Builds every fuzz target and runs each for TARGET_SECONDS, one after the
# other; replays fuzz/regressions/ first. Exits non-zero, naming the targets,
# if any target crashed (a panic, a broken invariant, a timeout, an OOM).
#
#   fuzz/run.sh 30                       # what CI runs
#   CARGO_BUILD_JOBS=1 nice -n 19 fuzz/run.sh 600
#
# Needs only a stable Rust toolchain: cargo-fuzz's nightly flags (sanitizer,
# coverage) are unlocked with RUSTC_BOOTSTRAP=1, and cargo-fuzz is installed
# if missing. Environment:
#   FUZZ_SANITIZER   address (default) or none (about twice as fast)
#   FUZZ_TARGETS     a space-separated subset of the targets
#   KORDON_FUZZ_STRICT=1   also check the reported arguable findings (README)
# New corpus entries go to fuzz/target/run-corpus/<target>, not fuzz/corpus.
set -uo pipefail

if [ $# -ne 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]] || [ "$1" -eq 0 ]; then
    echo "usage: $0 TARGET_SECONDS" >&2
    exit 2
fi
seconds=$1
cd "$(dirname "$0")" || exit 2

export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-address}
all_targets="json_fix status owntracks fix_bin ack topic case_file config engine"
targets=${FUZZ_TARGETS:-$all_targets}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 2
fi

echo "== building the fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build --sanitizer "$sanitizer" || { echo "FAILED: the fuzz targets do not build" >&2; exit 2; }

# Payload targets go just past the decoder's 4096-byte limit.
max_len() {
    case $1 in
        json_fix | status | owntracks | fix_bin | ack | topic) echo "-max_len=4200" ;;
        *) ;;
    esac
}

crashed=()
logs=target/run-logs
mkdir -p "$logs"

for target in $targets; do
    for input in "regressions/$target"/*; do
        [ -f "$input" ] || continue
        echo "== $target: replaying $input"
        if ! cargo fuzz run --sanitizer "$sanitizer" "$target" "$input" \
            >"$logs/$target.regressions.log" 2>&1; then
            echo "CRASH: $target on fuzz/$input (log: fuzz/$logs/$target.regressions.log)"
            grep -m1 -A4 "panicked at" "$logs/$target.regressions.log"
            echo "Reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $target $input"
            crashed+=("$target (fuzz/$input)")
        fi
    done

    echo "== $target: fuzzing for ${seconds}s"
    work=target/run-corpus/$target
    mkdir -p "$work" "corpus/$target"
    dict=()
    [ -f "dict/$target.dict" ] && dict=("-dict=dict/$target.dict")
    # shellcheck disable=SC2046
    cargo fuzz run --sanitizer "$sanitizer" "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        $(max_len "$target") "${dict[@]}" >"$logs/$target.log" 2>&1
    status=$?
    grep -E '^#[0-9]+' "$logs/$target.log" | tail -n 1
    if [ $status -ne 0 ]; then
        echo "CRASH: $target (exit $status; log: fuzz/$logs/$target.log)"
        grep -m1 -A6 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$logs/$target.log"
        grep -E "^artifact_prefix|Test unit written to" "$logs/$target.log" | tail -n 1
        crashed+=("$target")
    fi
done

if [ ${#crashed[@]} -ne 0 ]; then
    echo "FAILED: crashes in: ${crashed[*]}"
    echo "Reproduce a new crash: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET artifacts/TARGET/<file>"
    echo "(keep its input under fuzz/regressions/TARGET/ once it is understood; see fuzz/README.md)"
    exit 1
fi
echo "OK: no crashes in: $targets"
