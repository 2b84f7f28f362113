#!/usr/bin/env bash
# The GPU measurements of docs/gpu.md ("What is measured") in one command that fits a 10-minute GPU call.
#
#   scripts/gpu_checks.sh OUTDIR            (PYTHON=python3, DEVICE=cuda by default)
#
# Parts, each with its own time limit (so one slow part cannot take the others' time), in this order:
#   bench   benchmarks/bench_training.py --compile both: eager and compiled steps/s of NRI (spanning tree, indep.
#           edges, top |V|-1) and the VAE at the paper's models and batch sizes      -> training_<dev>.json
#   packed  PACKED (4) compiled NRI spanning-tree benchmarks at the same time, one process each
#                                                                                     -> packed_<dev>.json
#   tf32    TF32_STEPS-step (2,000) runs of NRI spanning tree and the VAE, seeds 0 to TF32_SEEDS - 1 (3), each with
#           TF32 on and off, all (12) at once (compiled on CUDA, as trainer.compile=auto does). "On" is
#           trainer.tf32=$TF32_ON: true on CUDA; on the CPU, where TF32 does not exist, emulate (TF32's rounding,
#           experiments/common/precision.py)                                          -> tf32_<dev>.json, runs.tar.gz
# plus gpu.txt (nvidia-smi's name / memory / driver line and torch's version) and log.txt (everything printed, with
# each part's wall time). At most 6 files, flat, with no machine paths in the JSON records (OUTDIR stands for the
# folder). benchmarks/gpu_checks_summary.py writes the packed and TF32 summaries (TF32's change beside the seed's).
#
# Data: NRI generates its own (seconds); the VAE reads MNIST from the data root ($SST_DATA_DIR, else ../shared/data).
# On a machine without Hydra or internet, prepare with scripts/gpu_bundle.sh here and see docs/gpu.md.
# A CPU smoke test (a few minutes): DEVICE=cpu QUICK=1 scripts/gpu_checks.sh /tmp/out (tiny models, a few steps, eager:
# compiling on the CPU takes minutes and was measured on its own, docs/gpu.md).
# PARTS (default "bench packed tf32") picks parts; NRI_ARGS and VAE_ARGS add Hydra overrides (space-separated) to
# every NRI / VAE command, e.g. for the CPU TF32 study of docs/gpu.md:
#   OMP_NUM_THREADS=1 DEVICE=cpu PARTS=tf32 TF32_STEPS=3000 TF32_LIMIT=6000 NRI_ARGS="data.batch_size=16 ..." \
#       scripts/gpu_checks.sh OUTDIR
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# The checkout need not be installed (a lent GPU machine has torch but not sst): import it from here.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${1:?usage: scripts/gpu_checks.sh OUTDIR}
py=${PYTHON:-python3}
dev=${DEVICE:-cuda}
packed=${PACKED:-4}
steps=${TF32_STEPS:-2000}
tf32_seeds=${TF32_SEEDS:-3}
tf32_limit=${TF32_LIMIT:-190}
parts=" ${PARTS:-bench packed tf32} "
if [ "$dev" = cpu ]; then tf32_on=${TF32_ON:-emulate}; else tf32_on=${TF32_ON:-true}; fi
TORCHINDUCTOR_COMPILE_THREADS_SET=${TORCHINDUCTOR_COMPILE_THREADS:-}
mkdir -p "$out/packed" "$out/runs"
out=$(cd "$out" && pwd)
log="$out/log.txt"
: > "$log"

if [ -n "${QUICK:-}" ]; then  # tiny and eager: checks that the script works, measures nothing
    bench_args=(--quick --compile off)
    packed_args=(--quick --iters 5 --warmup 1 --compile off)
    nri_args=(data.num_train=256 data.num_valid=128 data.num_test=128 model.encoder_hidden=16 model.decoder_hidden=16)
    vae_args=(model.hidden=[32,16] data.limit_eval=200 eval.iw_samples=2 eval.artifacts=false)
    steps=${TF32_STEPS:-20}
    tf32_seeds=${TF32_SEEDS:-2}  # eight processes starting at once take minutes on a small CPU
    tf32_limit=${TF32_LIMIT:-400}
else
    bench_args=(--compile both)
    packed_args=(--iters "${PACKED_ITERS:-6000}" --warmup 20 --compile on)
    nri_args=()
    vae_args=()
fi
read -ra more <<< "${NRI_ARGS:-}"; nri_args+=("${more[@]}")
read -ra more <<< "${VAE_ARGS:-}"; vae_args+=("${more[@]}")

part() {  # part NAME SECONDS CMD...: run with a time limit, log its output and wall time
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    echo "== $name (limit ${limit}s): $*" >> "$log"
    timeout --signal=INT --kill-after=20 "$limit" "$@" >> "$log" 2>&1
    echo "== $name: exit $? after $((SECONDS - t0)) s" >> "$log"
}

together() {  # together NAME SECONDS: the commands in the array cmds[], started at once, each with the time limit
    local name=$1 limit=$2 t0=$SECONDS i=0 pids=()
    # Inductor compiles kernels in a pool of nproc workers per process: share the cores instead (12 processes x 16
    # workers would be 192 Python processes); a value set by the caller wins
    local threads=$(( $(nproc) / ${#cmds[@]} ))
    export TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS_SET:-$(( threads > 0 ? threads : 1 ))}
    echo "== $name: ${#cmds[@]} processes at once (limit ${limit}s and" \
         "$TORCHINDUCTOR_COMPILE_THREADS compile threads each)" >> "$log"
    for cmd in "${cmds[@]}"; do
        i=$((i + 1))
        echo "-- $name $i: $cmd" >> "$log"
        # shellcheck disable=SC2086  # each entry is one command line of words without spaces inside them
        timeout --signal=INT --kill-after=20 "$limit" $cmd > "$out/$name.$i.log" 2>&1 &
        pids+=($!)
    done
    i=0
    for pid in "${pids[@]}"; do
        i=$((i + 1))
        wait "$pid"
        echo "-- $name $i: exit $?" >> "$log"
    done
    for f in "$out/$name".*.log; do echo "-- $f:"; tail -n 5 "$f"; rm -f "$f"; done >> "$log"
    echo "== $name: all done after $((SECONDS - t0)) s" >> "$log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } > "$out/gpu.txt" 2>&1

[[ $parts == *" bench "* ]] && part bench "${BENCH_LIMIT:-250}" "$py" benchmarks/bench_training.py --device "$dev" "${bench_args[@]}" \
    --experiments "${BENCH_EXPERIMENTS:-nri:spanning_tree+indep+ef_topk,vae}" --out "$out/training_$dev.json" \
    "${nri_args[@]/#/nri:}" "${vae_args[@]/#/vae:}"

cmds=()
for i in $(seq 1 "$packed"); do
    cmds+=("$py benchmarks/bench_training.py --device $dev --no-split ${packed_args[*]} \
--experiments nri:spanning_tree --out $out/packed/p$i.json ${nri_args[*]/#/nri:}")
done
[[ $parts == *" packed "* ]] && together packed "${PACKED_LIMIT:-110}"

cmds=()
for exp in nri vae; do
    if [ "$exp" = nri ]; then extra="relaxation=spanning_tree trainer.eval_every=$(( steps < 500 ? steps : 500 )) ${nri_args[*]}"
    else extra="trainer.eval_every=$(( steps < 1000 ? steps : 1000 )) ${vae_args[*]}"; fi
    for seed in $(seq 0 $((tf32_seeds - 1))); do
        for run in on off; do
            tf32=$tf32_on; [ "$run" = off ] && tf32=false
            cmds+=("$py run.py experiment=$exp $extra seed=$seed trainer.tf32=$tf32 trainer.max_steps=$steps \
trainer.progress=false logger=none device=$dev hydra.run.dir=$out/runs/${exp}_s${seed}_tf32$run")
        done
    done
done
[[ $parts == *" tf32 "* ]] && together tf32 "$tf32_limit"

knobs=""  # the settings this call was made with, for the records (no machine paths: PYTHON is left out)
for v in OMP_NUM_THREADS DEVICE QUICK PARTS PACKED PACKED_ITERS TF32_STEPS TF32_SEEDS TF32_ON NRI_ARGS VAE_ARGS BENCH_EXPERIMENTS \
         BENCH_LIMIT PACKED_LIMIT TF32_LIMIT; do
    [ -n "${!v:-}" ] && knobs+="$v='${!v}' "
done
"$py" benchmarks/gpu_checks_summary.py "$out" --device "$dev" --command "${knobs}scripts/gpu_checks.sh OUTDIR" \
    >> "$log" 2>&1
# no machine paths in the records: the output folder is OUTDIR in them
for f in "$out"/*.json; do [ -f "$f" ] && sed -i "s|$out|OUTDIR|g" "$f"; done
tail -n 4 "$log"
