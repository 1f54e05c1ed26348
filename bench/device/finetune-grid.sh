#!/usr/bin/env bash
# The fine-tuning grid of scripts/finetune-curves.ts, one configuration per CPU core of the device
# machine (bench/device/pack-node.sh first, with results/cache/crab-mini copied to .gpu/crab-mini).
#   device run, carry [".gpu"]:  bash bench/device/finetune-grid.sh "1e-4 1e-3" "reader reader+query-encoder" [extra args]
# Writes $OUT/finetune-grid.json (every run's curves) and $OUT/finetune-grid.log.
set -u
lrs=${1:?learning rates}; parts=${2:?trained parts}; shift 2
out=${OUT:-/tmp/finetune-grid}; mkdir -p "$out/runs"
[ -x .gpu/node ] || { xz -dc .gpu/node.xz > .gpu/node; chmod +x .gpu/node; }
for lr in $lrs; do for part in $parts; do
  tag="$lr-${part//+/_}"
  .gpu/node .gpu/main.mjs finetune-curves --crab .gpu/crab-mini --lrs "$lr" --trainable "$part" --out "$out/runs/$tag.json" "$@" > "$out/runs/$tag.log" 2>&1 &
done; done
# The untrained pair's dev EM once (every run above scores EM only after training).
.gpu/node .gpu/main.mjs finetune-curves --crab .gpu/crab-mini --lrs 0 --trainable reader --out "$out/runs/baseline.json" --steps 0 --em-baseline "$@" > "$out/runs/baseline.log" 2>&1 &
wait
python3 - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
runs, config = [], None
for f in sorted(glob.glob(os.path.join(out, 'runs', '*.json'))):
    d = json.load(open(f)); config = d['config']; runs += d['runs']
json.dump({'config': config, 'runs': runs}, open(os.path.join(out, 'finetune-grid.json'), 'w'), indent=1)
with open(os.path.join(out, 'finetune-grid.log'), 'w') as log:
    for f in sorted(glob.glob(os.path.join(out, 'runs', '*.log'))):
        log.write(f'==> {os.path.basename(f)}\n' + open(f).read())
PY
rm -rf "$out/runs"
