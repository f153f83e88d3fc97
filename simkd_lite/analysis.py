"""Looking inside trained models (pooled features, 2-D projections, feature agreement) and judging
differences against the committed noise table (`load_seed_table`, `judge_paired`, `judge_step`).

Used by the demo's feature-space figure and by the feature-space notebook. Nothing here trains a network;
`train_linear_head` fits one linear layer on fixed features (the "new classifier" ablation).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from torch import Tensor, nn

from simkd_lite.distillers.losses import global_pool
from simkd_lite.errors import SimKDLiteError


@torch.no_grad()
def pooled_features(model: nn.Module, images: Tensor, batch_size: int = 1000) -> Tensor:
    """(N, C) globally pooled `forward_features` of a zoo model (the teacher or a plain student)."""
    model.eval()
    return torch.cat([global_pool(model.forward_features(images[i:i + batch_size]))
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def simkd_pooled_features(student, images: Tensor, batch_size: int = 1000) -> Tensor:
    """(N, C_t) pooled *projected* maps of a SimKD student: exactly what the teacher head reads."""
    student.eval()
    captured = []
    hook = student.teacher_head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    try:
        for i in range(0, len(images), batch_size):
            student(images[i:i + batch_size])
    finally:
        hook.remove()
    return torch.cat(captured)


def project_2d(features: Tensor | np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, C) -> (N, 2) with scikit-learn's PCA (fast) or t-SNE (slower, local structure)."""
    x = np.asarray(features, dtype=np.float32)
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        return TSNE(n_components=2, init="pca", perplexity=min(30.0, max(5.0, len(x) / 10)),
                    random_state=seed).fit_transform(x)
    raise ValueError(f"Unknown projection {method!r}: use 'pca' or 'tsne'.")


def project_2d_shared(features: dict[str, Tensor | np.ndarray], method: str = "pca", seed: int = 0) -> dict:
    """Several (N, C) feature sets of the same C in ONE 2-D space, so that their positions can be compared.

    PCA is fitted on the first set (the reference, e.g. the teacher's features) and applied to every set:
    one pair of axes for all. t-SNE cannot place new points, so it embeds all sets together and splits the
    result. Returns {name: (N, 2)} in the order given.
    """
    names = list(features)
    arrays = [np.asarray(features[n], dtype=np.float32) for n in names]
    if len({a.shape[1] for a in arrays}) != 1:
        raise ValueError(f"A shared 2-D space needs features of one width, got {[a.shape[1] for a in arrays]}.")
    if method == "pca":
        pca = PCA(n_components=2, random_state=seed).fit(arrays[0])
        return {n: pca.transform(a) for n, a in zip(names, arrays)}
    joint = project_2d(np.concatenate(arrays), method, seed)
    bounds = np.cumsum([0] + [len(a) for a in arrays])
    return {n: joint[bounds[i]:bounds[i + 1]] for i, n in enumerate(names)}


# ------------------------------------------------------------------------------ predictions and agreement
def prediction_agreement(logits_a: Tensor, logits_b: Tensor) -> float:
    """Percentage of images on which two models predict the same class (e.g. student vs teacher)."""
    return 100.0 * (logits_a.argmax(1) == logits_b.argmax(1)).float().mean().item()


def confusion(labels: Tensor | np.ndarray, logits: Tensor, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts: row = true class, column = predicted class (scikit-learn)."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(np.asarray(labels), logits.argmax(1).cpu().numpy(), labels=list(range(num_classes)))


def per_class_cosine(features_a: Tensor, features_b: Tensor, labels: Tensor | np.ndarray, num_classes: int) -> np.ndarray:
    """Mean cosine similarity between paired rows of two (N, C) feature sets, per true class.

    Row i of `features_a` and row i of `features_b` describe the same image (e.g. the SimKD student's
    projected pooled features and the teacher's pooled features); both must have the same C.
    """
    if features_a.shape != features_b.shape:
        raise ValueError(f"Cosine similarity needs features of the same shape, got {tuple(features_a.shape)} and "
                         f"{tuple(features_b.shape)} (a plain student's features live in another space: project them).")
    cos = torch.nn.functional.cosine_similarity(features_a.float(), features_b.float(), dim=1).numpy()
    labels = np.asarray(labels)
    return np.array([cos[labels == c].mean() if (labels == c).any() else np.nan for c in range(num_classes)])


def train_linear_head(features: Tensor, labels: Tensor, num_classes: int, *, weight_decay: float = 1e-4,
                      max_iter: int = 200, seed: int = 0) -> nn.Linear:
    """A new linear classifier fitted to fixed (N, C) features with cross-entropy: the paper's ablation
    "train a new head on the student's features" next to "reuse the teacher's head".

    Full-batch L-BFGS on the convex objective CE + weight_decay * ||W||^2, so the result depends on the
    features, not on a learning-rate schedule. Returns the head in eval mode with gradients off.
    """
    torch.manual_seed(seed)
    features, labels = features.float().detach(), torch.as_tensor(labels).long()
    head = nn.Linear(features.shape[1], num_classes)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def objective() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(features), labels) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
    return head.eval().requires_grad_(False)


@torch.no_grad()
def simkd_alignment(distiller, images: Tensor, teacher_features: Tensor, batch_size: int = 1000) -> dict:
    """How well a SimKD distiller's projected maps match the teacher's on `images`.

    Returns {"feature_mse": the SimKD loss over all images, "logits": (N, classes) through the reused head}.
    `teacher_features` are the teacher's `forward_features` for the same images (N, C_t, H_t, W_t).
    """
    was_training = distiller.training
    distiller.eval()
    squared, count, logits = 0.0, 0, []
    for i in range(0, len(images), batch_size):
        feats = distiller.student.forward_features(images[i:i + batch_size])
        projected, target, out = distiller.projector(feats, teacher_features[i:i + batch_size], distiller.teacher_head)
        squared += torch.sum((projected - target) ** 2).item()
        count += target.numel()
        logits.append(out)
    distiller.train(was_training)
    return {"feature_mse": squared / count, "logits": torch.cat(logits)}


# ------------------------------------------------------------------------------ sizes and costs
def count_macs(model: nn.Module, *inputs: Tensor) -> int:
    """Multiply-accumulates of the Conv2d and Linear layers in one forward pass of `inputs`.

    Counted from the actual output shapes with forward hooks, so it also works on the "meta" device
    (shapes only, no memory). BatchNorm, ReLU and pooling are ignored (they are cheap element-wise ops).
    Multiply by 2 for FLOPs in the "one multiply + one add" convention.
    """
    total = 0

    def conv_hook(module: nn.Conv2d, args, output):
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, args, output):
        nonlocal total
        total += output.numel() * module.in_features

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return total


def projector_summary(teacher: str, student: str, factor: int = 2, *, num_classes: int = 100, in_channels: int = 3,
                      image_size: int = 32) -> dict:
    """Everything the projector designer shows, for zoo names `teacher` and `student`, without any weights.

    Models are built on the "meta" device (shapes only), so even ResNet-32x4 costs milliseconds.
    Returns a dict with the two feature-map shapes, the aligned size, the layer-by-layer shapes and
    parameter counts of the projector, its closed-form count, its MACs for one image, and the
    deployed-student vs teacher parameter counts and compression ratio.
    """
    from simkd_lite.distillers.projector import SimKDProjector, projector_parameter_count
    from simkd_lite.models import count_parameters, create_model

    with torch.device("meta"):
        t_net = create_model(teacher, num_classes, in_channels)
        s_net = create_model(student, num_classes, in_channels)
        probe = torch.empty(1, in_channels, image_size, image_size)
        t_map = tuple(t_net.forward_features(probe).shape[1:])
        s_map = tuple(s_net.forward_features(probe).shape[1:])
        projector = SimKDProjector(s_map[0], t_map[0], factor)
        size = min(t_map[-1], s_map[-1])
        x = torch.empty(1, s_map[0], size, size)
        layers = []
        for index, layer in enumerate(projector.transfer):
            x = layer(x)
            layers.append({"name": f"transfer.{index}", "layer": _layer_text(layer), "output": tuple(x.shape[1:]),
                           "params": count_parameters(layer)})
        projector_macs = count_macs(projector.transfer, torch.empty(1, s_map[0], size, size))
        student_macs = count_macs(s_net, probe) - s_net.get_classifier().in_features * num_classes
        teacher_macs = count_macs(t_net, probe)
        head_macs = t_net.get_classifier().in_features * num_classes
    if not getattr(t_net, "classifier_on_features", False):
        raise ValueError(f"{teacher} cannot be a SimKD teacher: its classifier does not read its last feature map.")
    head = count_parameters(t_net.get_classifier())
    encoder = count_parameters(s_net) - count_parameters(s_net.get_classifier())
    proj = count_parameters(projector)
    deployed = encoder + proj + head
    teacher_params = count_parameters(t_net)
    return {
        "teacher": teacher, "student": student, "factor": factor,
        "teacher_map": t_map, "student_map": s_map, "aligned_size": size,
        "bottleneck": t_map[0] // factor, "layers": layers,
        "projector_params": proj, "formula_params": projector_parameter_count(s_map[0], t_map[0], factor),
        "projector_macs": projector_macs,
        "student_encoder_params": encoder, "teacher_head_params": head, "deployed_params": deployed,
        "teacher_params": teacher_params, "compression_ratio": teacher_params / deployed,
        "deployed_macs": student_macs + projector_macs + head_macs, "teacher_macs": teacher_macs,
    }


def _layer_text(layer: nn.Module) -> str:
    if isinstance(layer, nn.Conv2d):
        k = layer.kernel_size[0]
        return f"Conv{k}x{k}({layer.in_channels}->{layer.out_channels}, bias={layer.bias is not None})"
    if isinstance(layer, nn.BatchNorm2d):
        return f"BatchNorm({layer.num_features})"
    return type(layer).__name__


def measure_throughput(model: Callable[[Tensor], Tensor], images: Tensor, device: torch.device | str,
                       batch_size: int = 256, repeats: int = 3, warmup: int = 1) -> float:
    """Images per second of `model(batch)` over `images` on `device` (best of `repeats` timed passes).

    The images are moved to the device first, so this measures the model, not the data transfer. On a
    GPU the clock waits for the device (`synchronize`) before it stops.
    """
    import time

    device = torch.device(device)
    images = images.to(device)
    if hasattr(model, "eval"):
        model.eval()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif device.type == "mps":
            torch.mps.synchronize()

    best = float("inf")
    with torch.inference_mode():
        for run in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            for i in range(0, len(images), batch_size):
                model(images[i:i + batch_size])
            sync()
            if run >= warmup:
                best = min(best, time.perf_counter() - start)
    return len(images) / best


# ------------------------------------------------------------------------------ the noise, and verdicts against it
SEED_TABLE = "demo_seeds.json"   # package data in simkd_lite/results/, written by benchmarks/demo_seeds.py
# The committed table of each data set the notebooks judge on (package data in simkd_lite/results/).
SEED_TABLES = {"fashion_mnist": SEED_TABLE,
               "imagefolder": "own_data_seeds.json"}  # notebook 06's generated folder: benchmarks/own_data_seeds.py
PAIRED = {"simkd_minus_vanilla": "SimKD − vanilla", "simkd_minus_kd": "SimKD − KD",
          "simkd_minus_fitnet": "SimKD − FitNet", "teacher_minus_simkd": "teacher − SimKD"}
STUDENT_PAIRS = ("simkd_minus_vanilla", "simkd_minus_kd", "simkd_minus_fitnet")  # two students of one run
NOISE_MULTIPLE = 2.0   # "larger than the noise" = more than twice the standard deviation
MIN_RUNS = 3           # a spread from fewer committed runs is no measurement of the noise


def load_seed_table(path: str | Path | None = None, dataset: str = "fashion_mnist") -> dict:
    """A committed noise table: one recipe run over seeds x CPU thread counts (quick profile).

    Returns the JSON that `benchmarks/demo_seeds.py` (Fashion-MNIST, `simkd-lite demo`) or
    `benchmarks/own_data_seeds.py` (notebook 06's generated image folder) writes: "rows" (one record per run,
    with "seed", "threads" and each method's top-1), "summary" (mean/std/min/max/n per method under "top1",
    and per paired difference such as "simkd_minus_vanilla"), "covers" and "not_covered" (what the noise
    includes), and for a generated folder its "recipe". `path`: another table written by those scripts;
    None = the one shipped in the package for `dataset`.
    """
    if path is None:
        from importlib.resources import files

        name = SEED_TABLES.get(dataset)
        resource = files("simkd_lite") / "results" / (name or SEED_TABLE)
        if name is None or not resource.is_file():
            raise SimKDLiteError(f"The package has no seed table for {dataset} ({resource}): run "
                                 f"`python benchmarks/{'own_data_seeds' if dataset == 'imagefolder' else 'demo_seeds'}.py`.")
        return json.loads(resource.read_text())
    path = Path(path)
    if not path.is_file():
        raise SimKDLiteError(f"No seed table at {path}: `python benchmarks/demo_seeds.py --json {path}` writes one.")
    return json.loads(path.read_text())


def seed_table_for(dataset: str, profile: str, path: str | Path | None = None, *, recipe: dict | None = None) -> dict | None:
    """The committed table when it measured this setting (its data set, quick profile and, for a generated
    image folder, the same `recipe`), else None, with a printed line saying why: a verdict against another
    setting's noise would be meaningless."""
    if path is None and dataset not in SEED_TABLES:
        print(f"No committed noise table measures {dataset}/{profile} (tables: {', '.join(SEED_TABLES)}): no "
              f"verdicts here (measure yours with benchmarks/demo_seeds.py).")
        return None
    table = load_seed_table(path, dataset)
    if (dataset, profile) != (table["dataset"], table.get("profile", "quick")):
        print(f"The committed noise table measures {table['dataset']} with the {table.get('profile', 'quick')} "
              f"profile, not {dataset}/{profile}: no verdicts here (measure yours with benchmarks/demo_seeds.py).")
        return None
    committed = table.get("recipe")
    if committed is not None and recipe != committed:
        given = recipe or {}
        differ = sorted(k for k in set(committed) | set(given) if committed.get(k) != given.get(k))
        changes = "; ".join(f"{k}: {committed.get(k)!r} there, {given.get(k)!r} here" for k in differ)
        print(f"The committed noise table measures another recipe ({changes}): no verdicts here (measure yours "
              "with benchmarks/own_data_seeds.py).")
        return None
    return table


@dataclass
class Verdict:
    """A judged difference: `larger` is True/False (None: no table to judge against); prints as its lines."""

    label: str
    value: float
    larger: bool | None
    lines: list[str]

    def __bool__(self) -> bool:
        return bool(self.larger)

    def __str__(self) -> str:
        return "\n".join(self.lines)

    __repr__ = __str__


def _span(s: dict, sign: str = "+") -> str:
    return (f"{s['mean']:{sign}.2f} ± {s['std']:.2f} (range {s['min']:{sign}.2f} … {s['max']:{sign}.2f}, "
            f"n = {s['n']} runs)")


def judge_paired(this_run: float, key: str, table: dict | None) -> Verdict:
    """This run's paired difference (e.g. SimKD − vanilla from one run) against the committed spread of the
    same difference over seeds x threads.

    Rule: the committed difference is larger than the noise when every committed run has the same sign and
    its mean is more than NOISE_MULTIPLE standard deviations from zero; this run is then checked against the
    committed range (a value outside it means this run met conditions the table does not cover).
    """
    label = PAIRED[key]
    head = f"{label}: this run {this_run:+.2f} points"
    if table is None:
        return Verdict(label, this_run, None, [head + " (no committed table for this setting: not judged)"])
    s = table["summary"][key]
    if s["n"] < MIN_RUNS:
        return Verdict(label, this_run, None, [head + f" (the committed table has {s['n']} run(s), fewer than "
                                                      f"{MIN_RUNS}: not judged)"])
    same_sign = s["min"] > 0 or s["max"] < 0
    larger = same_sign and round(abs(s["mean"]), 2) > round(NOISE_MULTIPLE * s["std"], 2)
    inside = s["min"] <= round(this_run, 2) <= s["max"]   # the table keeps 2 decimals
    return Verdict(label, this_run, larger, [
        head + f"; committed {_span(s)}.",
        f"  larger than the noise: {'YES' if larger else 'NO'} (rule: every committed run has the same sign and "
        f"|mean| > {NOISE_MULTIPLE:g} × std; here {'all' if same_sign else 'not all'} runs share the sign, "
        f"|mean| = {abs(s['mean']):.2f} vs {NOISE_MULTIPLE:g} × std = {NOISE_MULTIPLE * s['std']:.2f}).",
        f"  this run is {'inside' if inside else 'OUTSIDE'} the committed range."])


def difference_noise(table: dict) -> float:
    """The noise of a difference between two students of one run: the largest standard deviation of the
    committed student-vs-student paired differences (SimKD − vanilla, − KD, − FitNet)."""
    return max(table["summary"][key]["std"] for key in STUDENT_PAIRS if key in table["summary"])


def judge_step(label: str, difference: float, table: dict | None, test_images: int | None = None) -> Verdict:
    """A difference the table did not measure (e.g. two projector designs of one seed) against the noise of
    differences between students: larger than the noise when |difference| > NOISE_MULTIPLE × that std."""
    images = f" ({round(difference * test_images / 100):+,} of {test_images:,} test images)" if test_images else ""
    head = f"{label}: {difference:+.2f} points{images}"
    if table is None:
        return Verdict(label, difference, None, [head + " (no committed table for this setting: not judged)"])
    if len(table["rows"]) < MIN_RUNS:
        return Verdict(label, difference, None, [head + f" (the committed table has {len(table['rows'])} run(s), "
                                                        f"fewer than {MIN_RUNS}: not judged)"])
    limit = round(NOISE_MULTIPLE * difference_noise(table), 2)
    larger = round(abs(difference), 2) > limit   # accuracies are multiples of 0.01: compare what is printed
    return Verdict(label, difference, larger, [
        head + f": {'LARGER than' if larger else 'within'} the noise (rule: |difference| > {NOISE_MULTIPLE:g} × "
        f"{difference_noise(table):.2f} = {limit:.2f} points, the largest std of a student-vs-student paired "
        f"difference over the {len(table['rows'])} committed runs)."])


def verdict_table(verdicts: Sequence[Verdict]) -> list[dict]:
    """Rows for a DataFrame: label, value, and the verdict as text ("larger", "within the noise", "not judged")."""
    return [{"difference": v.label, "points": round(v.value, 2),
             "larger than the noise?": "not judged" if v.larger is None else "yes" if v.larger else "no"}
            for v in verdicts]


def runs_text(table: dict) -> str:
    """Which runs a table holds, e.g. 's0/t1, s0/t2, s1/t1' (seed/threads): not always a full grid."""
    return ", ".join(f"s{r['seed']}/t{r['threads']}" for r in table["rows"])
