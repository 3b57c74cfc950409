#!/usr/bin/env bash
# One short device call for issue #16: where does the short-step slowdown come from? The small MLP
# (≈ 2 ms steps) with bare / logger / energy-nolog / energy interleaved, then bare / energy-nolog with the
# GPU energy counter read every 5 s instead of 0.5 s (does NVML's ~4 ms counter read stall CUDA launches?).
#   source benchmarks/gpu_setup.sh; bash benchmarks/gpu_diagnose.sh
set -uo pipefail
OUT=${OUT:-bench_out}
mkdir -p "$OUT/kinds" "$OUT/counter5s"
python3 benchmarks/overhead.py --workload mlp-small --steps 3000 --kinds bare,logger,energy-nolog,energy \
  --rounds 8 --memory-rounds 0 --budget-s ${KINDS_S:-220} --out "$OUT/kinds" > "$OUT/kinds/log.txt" 2>&1
GREEN_MLOPS_GPU_COUNTER_INTERVAL=5 python3 benchmarks/overhead.py --workload mlp-small --steps 3000 \
  --kinds bare,energy-nolog --rounds 8 --memory-rounds 0 --budget-s ${COUNTER_S:-100} --out "$OUT/counter5s" \
  > "$OUT/counter5s/log.txt" 2>&1
python3 scripts/nvml_probe.py > "$OUT/nvml_probe.txt" 2>&1 || true
for p in kinds counter5s; do echo "== $p"; cat "$OUT/$p/overhead.md" 2>/dev/null || tail -5 "$OUT/$p/log.txt"; done
