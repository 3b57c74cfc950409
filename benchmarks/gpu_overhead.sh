#!/usr/bin/env bash
# One device call (≤ 10 min) for issues #16 and #3: what metering costs, on short and long steps,
# through SQLite and a real tracking server. Source benchmarks/gpu_setup.sh first. Tables go to stdout
# (last) and every part's JSON and log to $OUT/<part>/.
#   source benchmarks/gpu_setup.sh; bash benchmarks/gpu_overhead.sh
set -uo pipefail
OUT=${OUT:-bench_out}
mkdir -p "$OUT"
mlflow server --backend-store-uri "sqlite:///$OUT/server.db" --default-artifact-root "$OUT/server-artifacts" \
  --host 127.0.0.1 --port 5055 --workers 1 > "$OUT/server.log" 2>&1 &
server=$!
for _ in $(seq 60); do curl -sf http://127.0.0.1:5055/health >/dev/null && break; sleep 1; done
part() {  # name, then overhead.py arguments
  local name=$1; shift
  mkdir -p "$OUT/$name"
  python3 benchmarks/overhead.py "$@" --out "$OUT/$name" > "$OUT/$name/log.txt" 2>&1
  echo "rc=$? $name: python3 benchmarks/overhead.py $*" >> "$OUT/summary.txt"
}
part mlp --workload mlp --kinds logger,energy,energy-http --baseline logger --server http://127.0.0.1:5055 \
  --rounds 8 --budget-s ${MLP_S:-210}
part mlp-small --workload mlp-small --kinds bare,energy --rounds 8 --budget-s ${SMALL_S:-120}
part resnet18 --workload resnet18 --kinds bare,energy,energy-http --server http://127.0.0.1:5055 \
  --rounds 8 --memory-rounds 0 --budget-s ${RESNET_S:-170}
kill $server 2>/dev/null
for name in mlp mlp-small resnet18; do
  echo; echo "== $name"; grep -E '^\|' "$OUT/$name/log.txt" | tail -8 || tail -5 "$OUT/$name/log.txt"
done
cat "$OUT/summary.txt"
