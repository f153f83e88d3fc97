"""Control for the CUDA equivalence tests: how far do two runs of the SAME path drift apart?

    PYTHONPATH=$PWD python benchmarks/gpu_control.py [--device cuda]

ResNet-32x4 -> ResNet-8x4 SimKD, random weights and images (loss ~ hundreds: large updates), batch 64,
14 steps over 2 epochs with an lr milestone. With cuDNN benchmark mode and TF32 (PyTorch's defaults for
convolutions) it trains eager vs eager and eager vs CUDA graph, then again with deterministic cuDNN and no
TF32, and prints the largest relative weight difference and the largest relative loss difference.
"""
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402

from test_graphed import MEAN, PAPER, STD, _uint8_data, simkd_pair, train_eager, train_shared, weights  # noqa: E402
from simkd_lite.training.device_data import DeviceTensorBatches
from simkd_lite.training.device_data import GpuAugment  # noqa: E402


def worst(a, b):
    return max(((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12)).item()
               for k in a if a[k].is_floating_point() and a[k].numel() > 1)


def main(device="cuda"):
    device = torch.device(device)
    images, labels = _uint8_data(6 * 64 + 16, size=32)
    batches = DeviceTensorBatches(images, labels, GpuAugment(MEAN, STD, padding=4), 64, seed=0, device=device)
    for deterministic in (False, True):
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic, not deterministic
        torch.backends.cudnn.allow_tf32 = not deterministic
        ref = simkd_pair("resnet32x4", "resnet8x4", classes=100).to(device).to(memory_format=torch.channels_last)
        a, b, c = ref, copy.deepcopy(ref), copy.deepcopy(ref)
        la = train_eager(a, batches, PAPER, device, 2)
        lb = train_eager(b, batches, PAPER, device, 2)
        lc, _ = train_shared(c, batches, PAPER, device, 2, cuda_graph=device.type == "cuda")
        dl = lambda x, y: max(abs(p - q) / abs(q) for p, q in zip(x, y))  # noqa: E731
        print(f"deterministic={deterministic}: eager vs eager  weights {worst(weights(b), weights(a)):.2e} "
              f"losses {dl(lb, la):.2e} | graph vs eager  weights {worst(weights(c), weights(a)):.2e} "
              f"losses {dl(lc, la):.2e}", flush=True)


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cuda")
