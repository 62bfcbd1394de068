#!/usr/bin/env bash
# Verification benchmark of the generated TypeScript verifier (docs/benchmarks.md): generates the
# module for the booking spec, compiles it with this benchmark, and runs it. Bounded: about
# 9 cases x BENCH_ROUNDS (5) x BENCH_ROUND_MS (1500 ms) of CPU time, no network.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f node_modules/.package-lock.json ] || npm ci --no-audit --no-fund
work=target/auth-gen-bench
rm -rf "$work" && mkdir -p "$work/bench"
cargo run -q -p auth-gen -- generate --spec fixtures/specs/booking.toml --target typescript --out "$work/gen" >/dev/null
cp auth-gen/bench/verify.ts "$work/bench/"
cat > "$work/tsconfig.json" <<'JSON'
{ "compilerOptions": { "strict": true, "target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext",
  "types": ["node"], "outDir": "out", "rootDir": ".", "skipLibCheck": true }, "include": ["gen/*.ts", "bench/*.ts"] }
JSON
node_modules/.bin/tsc -p "$work"
node "$work/out/bench/verify.js"
