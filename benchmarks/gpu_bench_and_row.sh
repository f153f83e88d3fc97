#!/usr/bin/env bash
set -uo pipefail
cd "$(dirname "$0")/repo"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name --format=csv,noheader
python -m simkd_lite bench --device cuda --steps 30 --repeats 2 --json $OUT/bench.json | tail -6
python -c "from simkd_lite.data import write_cifar_fixture; write_cifar_fixture('/tmp/c', 'cifar100', n_train=50000, n_test=10000)"
S=$(date +%s)
python -m simkd_lite demo --dataset cifar100 --profile paper --student resnet8x4 --epochs 2 --data-root /tmp/c \
   --teacher .gpu_teacher_missing 2>&1 | tail -2
python -m simkd_lite train-teacher --dataset cifar100 --profile paper --model resnet32x4 --epochs 1 --data-root /tmp/c --out /tmp/t --quiet | head -1
S=$(date +%s)
python -m simkd_lite demo --dataset cifar100 --profile paper --student resnet8x4 --epochs 2 --data-root /tmp/c \
   --teacher /tmp/t/best.pt --together --out /tmp/row --quiet 2>&1 | tail -9
echo "together (4 students, 2 epochs) wall: $(( $(date +%s) - S )) s"
