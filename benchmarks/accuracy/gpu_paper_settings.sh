#!/usr/bin/env bash
# Issue 8 at the paper's settings, on a GPU: pretrain a width-64 theta0 with `skad-transfer pretrain`
# on Tiny-ImageNet-32, then CIFAR-10 one-vs-rest with ADIB (100 epochs, the library's defaults
# otherwise) and kNN-AD on that theta0, into a result store.
#
#   benchmarks/accuracy/gpu_paper_settings.sh [pretrain|bench|all] DATA WORK [CLASS_INDEX ...]
#
# DATA holds tiny-imagenet-32.zip and cifar10-jpg.zip; WORK receives theta0-w$WIDTH.pth (and its
# resumable checkpoint), the store WORK/store and its report. Each phase skips what WORK already
# holds (a written theta0, stored runs), so a run cut off by a time limit continues where it stopped.
# Knobs (environment): WIDTH (64), PRETRAIN_EPOCHS (30), PRETRAIN_LIMIT (images per class; all),
# EPOCHS (100), SEEDS ("0"), METHODS ("knn adib"), DEVICE (auto), PYTHON (python), BENCH_EXTRA
# (more `bench` flags, e.g. "--n-normal 64 --n-test 200" for a quick check on the CPU).
set -euo pipefail
phase=$1 DATA=$2 WORK=$3
shift 3
CLASSES=${*:-0 1 2 3 4 5 6 7 8 9}  # CIFAR-10 label order: airplane=0 ... truck=9
WIDTH=${WIDTH:-64} PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-30} EPOCHS=${EPOCHS:-100} SEEDS=${SEEDS:-0}
METHODS=${METHODS:-knn adib} DEVICE=${DEVICE:-auto} PYTHON=${PYTHON:-python}
theta0=$WORK/theta0-w$WIDTH.pth
mkdir -p "$WORK"

if [[ $phase == pretrain || $phase == all ]] && [[ ! -f $theta0 ]]; then
    started=$(date +%s)
    # shellcheck disable=SC2086
    $PYTHON -m skad_transfer pretrain "$DATA/tiny-imagenet-32.zip" --output "$theta0" --width "$WIDTH" \
        --epochs "$PRETRAIN_EPOCHS" --device "$DEVICE" --quiet ${PRETRAIN_LIMIT:+--limit $PRETRAIN_LIMIT}
    echo "pretrain: $(( $(date +%s) - started )) s, wrote $theta0"
fi
if [[ $phase == bench || $phase == all ]]; then
    # shellcheck disable=SC2086
    $PYTHON -m skad_transfer bench --dataset cifar10 --data "$DATA" --protocol one-vs-rest --classes $CLASSES \
        --methods $METHODS --seeds $SEEDS --epochs "$EPOCHS" --weights "$theta0" --device "$DEVICE" \
        --output "$WORK/store" ${BENCH_EXTRA:-}
    $PYTHON -m skad_transfer report "$WORK/store" --out "$WORK/store/report" --data "$DATA"
fi
