#!/usr/bin/env bash
# Builds the cargo-fuzz targets of fuzz/ and runs each for a bounded time, then prints a summary
# (executions, coverage, corpus, crashes) per target. Exits 1 when any target found a crash,
# timeout or out-of-memory input, 75 when cargo-fuzz or the nightly toolchain is missing.
#
#   fuzz/run.sh                      # every target, FUZZ_SECONDS each
#   fuzz/run.sh token_bytes spec_parse
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 120)
#   FUZZ_SANITIZER  none (default: the code under test has no unsafe) or address
#   FUZZ_TOOLCHAIN  toolchain for cargo-fuzz (default nightly)
#   FUZZ_TIMEOUT    seconds after which one input counts as a hang (default 10)
#
# Corpora: fuzz/corpus/<target>/ collects what the fuzzer finds (not committed); the committed
# seeds are read from fuzz/seeds/<target>/ (and, for spec_parse, fixtures/specs/). Findings go to
# fuzz/artifacts/<target>/, logs to fuzz/runs/<target>.log. Replay one finding with
#   cargo +nightly fuzz run -s none <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
fuzz="$root/fuzz"
cd "$root"

all=(token_bytes token_structured spec_parse server_form server_signup_json server_router)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi
seconds=${FUZZ_SECONDS:-120}
sanitizer=${FUZZ_SANITIZER:-none}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
timeout=${FUZZ_TIMEOUT:-10}

if ! cargo +"$toolchain" --version >/dev/null 2>&1; then
    echo "run.sh: the $toolchain toolchain is missing (rustup toolchain install $toolchain)" >&2
    exit 75
fi
if ! cargo +"$toolchain" fuzz --version >/dev/null 2>&1; then
    echo "run.sh: cargo-fuzz is missing (cargo install cargo-fuzz)" >&2
    exit 75
fi

# Per target: the longest input, the dictionary, extra seed directories.
max_len() {
    case $1 in
        token_bytes) echo 4096 ;;
        spec_parse) echo 8192 ;;
        *) echo 4096 ;;
    esac
}
dictionary() {
    case $1 in
        token_bytes) echo "$fuzz/dict/token.dict" ;;
        spec_parse) echo "$fuzz/dict/spec.dict" ;;
        server_form) echo "$fuzz/dict/form.dict" ;;
        server_signup_json) echo "$fuzz/dict/json.dict" ;;
        server_router) echo "$scratch/router.dict" ;;
        *) echo "" ;;
    esac
}
extra_seeds() {
    case $1 in
        spec_parse) echo "$root/fixtures/specs" ;;
        *) echo "" ;;
    esac
}

scratch=$(mktemp -d "${TMPDIR:-/tmp}/auth-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cat "$fuzz/dict/form.dict" "$fuzz/dict/json.dict" > "$scratch/router.dict"

echo "== building ${#targets[@]} target(s) with $toolchain, sanitizer $sanitizer"
cargo +"$toolchain" fuzz build -s "$sanitizer" --fuzz-dir "$fuzz"

mkdir -p "$fuzz/runs"
summary=()
failed=0
for target in "${targets[@]}"; do
    corpus="$fuzz/corpus/$target"
    artifacts="$fuzz/artifacts/$target"
    log="$fuzz/runs/$target.log"
    mkdir -p "$corpus" "$artifacts"
    marker="$scratch/start-$target"
    touch "$marker"
    dirs=("$corpus" "$fuzz/seeds/$target")
    extra=$(extra_seeds "$target")
    [ -n "$extra" ] && dirs+=("$extra")
    options=(-max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb=2048 -max_len="$(max_len "$target")"
        -print_final_stats=1 -artifact_prefix="$artifacts/")
    dict=$(dictionary "$target")
    [ -n "$dict" ] && options+=(-dict="$dict")
    echo "== $target: ${seconds}s, corpus $corpus"
    status=0
    # The router target keeps its SQLite database under TMPDIR: inside the scratch directory.
    TMPDIR="$scratch" cargo +"$toolchain" fuzz run -s "$sanitizer" --fuzz-dir "$fuzz" "$target" "${dirs[@]}" -- "${options[@]}" \
        >"$log" 2>&1 || status=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -1 || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")
    findings=$(find "$artifacts" -type f -newer "$marker" \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
    saved=$(find "$corpus" -type f | wc -l)
    if [ "$status" -ne 0 ] || [ "$findings" -ne 0 ]; then
        failed=1
        echo "   FINDING (exit $status): see $log and $artifacts/"
        grep -E '^(==[0-9]+== ERROR|SUMMARY|thread .* panicked)' "$log" | head -5 || true
    fi
    summary+=("$(printf '%-20s %6ss %12s execs %8s/s  cov %6s  ft %6s  corpus %-12s saved %6s  findings %s' \
        "$target" "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$saved" "$findings")")
done

echo
echo "== summary ($(date -u +%Y-%m-%dT%H:%MZ), sanitizer $sanitizer)"
printf '%s\n' "${summary[@]}"
exit "$failed"
