"""What per-epoch test scoring costs in the quick profile: benchmarks/results/eval_cost.json.

    python benchmarks/eval_cost.py            # one thread, interleaved repeats, min wall seconds

Two SimKD epochs (Fashion-MNIST quick profile: resnet8 student, cached shipped teacher, 10k train
images, the 10k test images) with: the test set scored only after the last epoch in batches of
1000 (the earlier quick default), scored after every epoch in batches of 1000, and after every
epoch in batches of 128 (the current default). The variants alternate, so a busy machine slows
all of them alike; the minimum over repeats is reported.
"""
import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from simkd_lite.data import load_dataset
from simkd_lite.distillers import FrozenTeacher, create_distiller
from simkd_lite.experiments.jobs import load_teacher
from simkd_lite.experiments.profiles import get_profile
from simkd_lite.training.batches import cache_teacher_outputs
from simkd_lite.training.loop import fit, materialize
from simkd_lite.models import create_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--data-root", default="data")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval_cost.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    recipe = get_profile("quick", "fashion_mnist")
    bundle = load_dataset("fashion_mnist", args.data_root, train_subset=recipe.train_subset, seed=0, augment=False)
    test, train = materialize(bundle.test), materialize(bundle.train)
    teacher, _ = load_teacher(None, "fashion_mnist", log=lambda m: None)
    cache = cache_teacher_outputs(FrozenTeacher(teacher), train[0], torch.device("cpu"))
    variants = {"scored after the last epoch only, batch 1000": dict(eval_every=0, eval_batch_size=1000),
                "scored after every epoch, batch 1000": dict(eval_every=1, eval_batch_size=1000),
                "scored after every epoch, batch 128": dict(eval_every=1, eval_batch_size=128)}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, overrides in variants.items():
            torch.manual_seed(0)
            distiller = create_distiller("simkd", create_model("resnet8", 10, 1), teacher, factor=2)
            started = time.perf_counter()
            fit(distiller, bundle.train, bundle.test, replace(recipe.student, epochs=2, **overrides), None, log=None,
                progress=False, test_tensors=test, train_tensors=train, teacher_cache=cache)
            seconds[name].append(round(time.perf_counter() - started, 1))
    result = {"what": "wall seconds of 2 SimKD epochs (quick profile, Fashion-MNIST), 1 thread",
              "machine": f"{platform.machine()}, {torch.get_num_threads()} thread, Python {platform.python_version()}",
              "min_seconds": {k: min(v) for k, v in seconds.items()}, "all_seconds": seconds}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
