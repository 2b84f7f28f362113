#!/usr/bin/env bash
# The GPU measurements the open issues ask for, in one command that fits a 10-minute GPU slot.
#
#   scripts/gpu_checks.sh OUTDIR [NRI_STEPS]     (PYTHON=python3 by default; DEVICE=cuda by default)
#
# Writes into OUTDIR (at most 8 files, flat):
#   gpu.txt                    nvidia-smi's name / memory / driver line (or "no nvidia-smi")
#   relaxations_<dev>.json     benchmarks/bench_relaxations.py (ours vs the released code's algorithms)
#   training_<dev>.json        benchmarks/bench_training.py (steps/s of NRI, VAE and L2X at paper settings)
#   nri_tree_s<seed>_metrics.json   spanning-tree NRI runs of NRI_STEPS steps (default 2500) at the paper's settings,
#   nri_tree_s<seed>_history.jsonl  one per seed in NRI_SEEDS (default "1 2"), with their histories, to time them and
#                                   see whether the tree is learnt (a seed can learn its negative: keep the best ELBO)
#   log.txt                    everything printed, with the wall time of each part
# Each part has its own time limit, so one slow part cannot take the others' time. For a quick smoke test on a
# CPU: DEVICE=cpu BENCH_EXPERIMENTS=nri NRI_ARGS="data.num_train=256 data.num_valid=128 data.num_test=128
# model.encoder_hidden=16 model.decoder_hidden=16" scripts/gpu_checks.sh /tmp/out 20 (benchmarks run --quick).
# NRI_ARGS (extra Hydra overrides of the NRI run, e.g. "relaxation.tau=0.5 optim.lr=1e-3") applies on a GPU too.
#
# Data: NRI generates its own (seconds). The VAE and L2X benchmarks read MNIST and BeerAdvocate from the data root
# (SST_DATA_DIR, else ../shared/data): on a machine without it, copy mnist/ and beer/ into a folder that travels
# with the checkout and point SST_DATA_DIR at it, and bring the cached word2vec file (data/cache/beer_word2vec_*,
# gzipped it is small enough to carry; gunzip it there) or leave L2X out: BENCH_EXPERIMENTS=nri,vae.
set -uo pipefail
# The checkout need not be installed (a lent GPU machine has torch but not sst): import it from here.
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
out=${1:?usage: scripts/gpu_checks.sh OUTDIR [NRI_STEPS]}
steps=${2:-2500}
py=${PYTHON:-python3}
dev=${DEVICE:-cuda}
quick=""
[ "$dev" = "cpu" ] && quick="--quick"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
log="$out/log.txt"
: > "$log"

part() {  # part NAME SECONDS CMD...: run with a time limit, log its output and wall time
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    echo "== $name (limit ${limit}s): $*" >> "$log"
    timeout "$limit" "$@" >> "$log" 2>&1
    echo "== $name: exit $? after $((SECONDS - t0)) s" >> "$log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } \
    > "$out/gpu.txt"
part relaxations 150 "$py" benchmarks/bench_relaxations.py --device "$dev" $quick --out "$out/relaxations_$dev.json"
part training 150 "$py" benchmarks/bench_training.py --device "$dev" $quick --experiments "${BENCH_EXPERIMENTS:-nri,vae,l2x}" \
    --out "$out/training_$dev.json"
for seed in ${NRI_SEEDS:-1 2}; do
    run_dir=$(mktemp -d)
    part "nri_tree_s$seed" 135 "$py" run.py experiment=nri relaxation=spanning_tree trainer.max_steps="$steps" \
        trainer.eval_every=$(( steps < 500 ? steps : 500 )) logger=none device="$dev" trainer.progress=false \
        seed="$seed" hydra.run.dir="$run_dir" ${NRI_ARGS:-}
    cp "$run_dir/metrics.json" "$out/nri_tree_s${seed}_metrics.json" 2>/dev/null || echo "no NRI metrics.json (seed $seed)" >> "$log"
    cp "$run_dir/history.jsonl" "$out/nri_tree_s${seed}_history.jsonl" 2>/dev/null || true
done
tail -n 3 "$log"
