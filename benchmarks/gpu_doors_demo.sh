#!/usr/bin/env bash
# One device call for issues #18 and #13: `green-mlops demo` timed as a user runs it (README says "well under
# 2 minutes on a GPU"), then the doors benchmark (every way in, bare vs metered, short steps) for the rest of the
# call. Pool the doors rounds of several calls with `benchmarks/doors.py --merge`.
#   source benchmarks/gpu_setup.sh; bash benchmarks/gpu_doors_demo.sh
set -uo pipefail
OUT=${OUT:-bench_out}
mkdir -p "$OUT/demo" "$OUT/doors"   # few files: a device call brings back about eight
t0=$(date +%s.%N)
python3 -m green_mlops demo --output /tmp/demo > "$OUT/demo/log.txt" 2>&1
rc=$?
demo_s=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')")
echo "demo: exit $rc, $demo_s s wall" | tee "$OUT/demo/time.txt"
left=$((${BUDGET_S:-540} - ${demo_s%.*})); [ $left -lt 30 ] && left=30
python3 benchmarks/doors.py --rounds ${DOORS_ROUNDS:-20} --steps 600 --budget-s $left --out /tmp/doors \
  > "$OUT/doors/log.txt" 2>&1
cp /tmp/doors/doors.json "$OUT/doors/" 2>/dev/null
tail -25 "$OUT/demo/log.txt"
echo "demo: exit $rc, $demo_s s wall"
tail -6 "$OUT/doors/log.txt"
