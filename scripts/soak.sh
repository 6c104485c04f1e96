#!/usr/bin/env bash
# Soak the screening loop: N frames, unthrottled (--fps 0: every frame is
# classified, none dropped), replaying BreakHis in a loop, and report RSS
# at the start and end of the loop plus the RSS seen in each status line.
#
#   scripts/soak.sh [FRAMES]            real model (default 100000 frames)
#   SCRIPTED=1 scripts/soak.sh [FRAMES] scripted scores instead of the model:
#       capture, decode, focus gate, decision, signals and log only. Cheap,
#       but says nothing about tract's memory; label its numbers as such.
#
# Env: MODEL (default models/histoscreen-alexnet-compact.onnx),
#      HISTOSCREEN_SHARED (default ../shared), BIN (default: cargo-built
#      target/debug/histoscreen-edge), OUT (folder for log + stderr).
set -euo pipefail
cd "$(dirname "$0")/.."

FRAMES=${1:-100000}
MODEL=${MODEL:-models/histoscreen-alexnet-compact.onnx}
SHARED=${HISTOSCREEN_SHARED:-../shared}
OUT=${OUT:-$(mktemp -d -t histoscreen-soak.XXXXXX)}
mkdir -p "$OUT"

if [[ -z "${BIN:-}" ]]; then
  # The workspace build shares its dependency builds with `cargo test --workspace`.
  cargo build -q --workspace --bins
  BIN=target/debug/histoscreen-edge
fi

if [[ -n "${SCRIPTED:-}" ]]; then
  classifier=(--fake-scores 0.1,0.2,0.9,0.95,0.5,0.05)
  what="scripted scores (no model)"
else
  classifier=(--model "$MODEL")
  what="model $MODEL"
fi

echo "soak: $FRAMES frames, $what, log $OUT/events.jsonl" >&2
start=$(date +%s)
"$BIN" run "${classifier[@]}" \
  --source "dir:$SHARED/data/breakhis" --loop --fps 0 \
  --max-frames "$FRAMES" --status-secs 30 \
  --log "$OUT/events.jsonl" 2> >(tee "$OUT/stderr.log" >&2) >/dev/null
wait
end=$(date +%s)

lines=$(wc -l < "$OUT/events.jsonl")
summary=$(grep '^run: ' "$OUT/stderr.log" | tail -n 1)
rss_series=$(grep -o 'rss [0-9.]* MiB' "$OUT/stderr.log" | awk '{print $2}' | paste -sd' ' -)
echo "soak: done in $((end - start)) s; $lines log lines"
echo "soak: $summary"
echo "soak: rss per status line (MiB): ${rss_series:-none}"
if [[ "$lines" -ne "$FRAMES" ]]; then
  echo "soak: expected $FRAMES log lines" >&2
  exit 1
fi
