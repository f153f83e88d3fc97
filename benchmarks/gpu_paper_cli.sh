#!/usr/bin/env bash
# Post-merge GPU check: the paper profile through the real CLI on a full-size fake CIFAR-100.
set -uo pipefail
cd "$(dirname "$0")/repo"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "from simkd_lite.data import write_cifar_fixture; write_cifar_fixture('/tmp/c', 'cifar100', n_train=50000, n_test=10000)"
S=$(date +%s)
python -m simkd_lite train-teacher --dataset cifar100 --profile paper --model resnet32x4 --epochs 2 --data-root /tmp/c --out /tmp/t --quiet
echo "teacher wall: $(( $(date +%s) - S )) s"
S=$(date +%s)
python -m simkd_lite distill --dataset cifar100 --profile paper --method simkd --student resnet8x4 --epochs 2 --data-root /tmp/c --teacher /tmp/t/best.pt --out /tmp/s
echo "simkd (cuda graph, fp32) wall: $(( $(date +%s) - S )) s"
cat /tmp/s/metrics.csv
python -m simkd_lite eval /tmp/s/last.pt --dataset cifar100 --data-root /tmp/c
S=$(date +%s)
python -m simkd_lite distill --dataset cifar100 --profile paper --method simkd --student resnet8x4 --epochs 2 --data-root /tmp/c --teacher /tmp/t/best.pt --out /tmp/s_eager --no-cuda-graph --quiet
echo "simkd (eager, fp32) wall: $(( $(date +%s) - S )) s"
cat /tmp/s_eager/metrics.csv
python -m simkd_lite bench --device cuda --steps 30 --repeats 2 --json $OUT/bench.json | tail -25
