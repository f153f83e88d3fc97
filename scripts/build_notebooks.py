#!/usr/bin/env python
"""Write the notebook series (notebooks/00..05_*.ipynb) from the cell texts below, without outputs.

    python scripts/build_notebooks.py            # (re)write all notebooks
    python scripts/build_notebooks.py --check    # exit 1 if a committed notebook differs from this script

The notebooks are generated so that they stay reproducible and reviewable as plain Python: edit the
cells here, run this script, commit both. tests/test_notebooks_clean.py checks that they agree.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def md(text: str):
    return new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text: str, tags: list[str] | None = None):
    cell = new_code_cell(textwrap.dedent(text).strip("\n"))
    if tags:
        cell.metadata["tags"] = tags
    return cell


def params(text: str):
    return code(text, tags=["parameters"])


# ---------------------------------------------------------------------------------------------- shared cells
PROFILES_NOTE = """
**Profiles.** `quick` (the default) is sized for a 2-core laptop CPU: the 8×8 digits data set, small
models, short schedules. `paper` is the official CIFAR-100 recipe of the paper (SGD, momentum 0.9, weight
decay 5e-4, batch 64, 240 epochs, lr 0.05 divided by 10 at epochs 150/180/210, random crop + flip) and
needs a GPU and hours: run it with `PROFILE="paper"`, `DATASET="cifar100"`, `DATA_ROOT` pointing at
CIFAR-100 and `TEACHER_CHECKPOINT` at a trained ResNet-32x4, e.g. with papermill:

```bash
SIMKD_PROFILE=paper papermill NOTEBOOK.ipynb out.ipynb -p DATASET cifar100 -p TEACHER_CHECKPOINT /path/resnet32x4_best.pth
```
"""

THREADS_NOTE = """
`CPU_THREADS = 1`: on a small CPU shared with other work, one thread per process was measured to be many
times faster than the defaults — for PyTorch with these tiny models, and even more for scikit-learn's t-SNE,
whose OpenMP threads wait for each other when the cores are busy — so the set-up cell limits PyTorch and
the BLAS/OpenMP pools (`threadpoolctl`). It also makes CPU runs repeatable whatever the machine's load.
Set `None` to keep the libraries' defaults.
"""

TEACHER_HELPER = '''
quiet = lambda message: None  # the engine's log callback: stay silent, we print summaries ourselves


def get_teacher(dataset, recipe):
    """The teacher network: TEACHER_CHECKPOINT if given, else the shipped one, else reuse or train one.

    A trained run is never repeated: `train_teacher(..., resume=True)` continues an unfinished
    OUT/last.pt and returns at once when the run is complete (checkpoint present -> reused).
    """
    if TEACHER_CHECKPOINT or shipped_teacher(dataset):
        return load_teacher(TEACHER_CHECKPOINT, dataset)[0]
    if dataset == "fashion_mnist" and PROFILE == "quick":
        # No shipped teacher (yet): a small stand-in, trained in seconds on a seeded subset.
        model, config, subset = "resnet8", replace(recipe.teacher, epochs=3, augment=False), 3000
    else:
        model, config, subset = recipe.teacher_model, recipe.teacher, None
    out = Path(RUNS) / f"teacher_{dataset}_{model}_e{config.epochs}_s{SEED}"
    status = "reusing" if (out / "last.pt").exists() else "training"
    print(f"{status} the {model} teacher in {out}")
    train_teacher(dataset, model, replace(config, seed=SEED, device=DEVICE), out, data_root=DATA_ROOT,
                  train_subset=subset, resume=True, log=quiet, progress=False)
    return load_model(out / "last.pt")[0]
'''

STUDENT_HELPER = '''
def student_run(method, teacher, bundle, config, shared):
    """Distil (or reuse) one student; runs are named by what defines them, so notebooks share them."""
    name = f"{method}_{bundle.info.name}_{teacher.model_name}-{recipe.student_model}_e{config.epochs}_s{SEED}"
    return distill_student(method, recipe.student_model, teacher, bundle, config, Path(RUNS) / name,
                           options=recipe.method_options.get(method, {}), resume=True, log=None,
                           progress=False, shared=shared)


def prepare(bundle, teacher, config):
    """Tensors of the (fixed) train and test sets and the teacher's outputs, computed once and shared."""
    test_x, test_y = materialize(bundle.test)
    shared = {"test_tensors": (test_x, test_y)}
    if not config.augment:  # without augmentation the train set and the teacher's outputs never change
        train_x, train_y = materialize(bundle.train)
        shared["train_tensors"] = (train_x, train_y)
        if config.cache_teacher:
            shared["teacher_cache"] = cache_teacher_outputs(FrozenTeacher(teacher.to(device)), train_x, device)
    return shared
'''

STANDARD_PARAMS = '''
DATASET = "digits"        # "digits" (8x8, bundled, instant) | "fashion_mnist" | "cifar100" (paper)
PROFILE = os.environ.get("SIMKD_PROFILE", "quick")   # "quick" (CPU, minutes) | "paper" (GPU, official recipe)
EPOCHS = None             # student epochs; None = the profile's
DEVICE = None             # None = the best available (cuda > mps > cpu), or "cpu", "cuda", "cuda:1", "mps"
SEED = 0
DATA_ROOT = "../data"     # the repository's data/ folder (the notebooks run from notebooks/)
RUNS = "../runs/notebooks"  # checkpoints and results; runs are named by their settings and reused
TEACHER_CHECKPOINT = None # a teacher file (ours or official {'model': ...}); None = shipped / reuse / train
CPU_THREADS = 1           # see the note below; None = PyTorch's default
'''


# ---------------------------------------------------------------------------------------------- 00
def quickstart():
    return [
        md("""
        # 00 · Quickstart: SimKD in about a minute

        **SimKD** ("Knowledge Distillation with the Reused Teacher Classifier", Chen et al., CVPR 2022) trains a
        small *student* network from a big, already trained *teacher* with one simple idea: make the student's
        last feature map look like the teacher's, then classify it with the **teacher's own classifier**.

        Write $f_T(x) \\in \\mathbb{R}^{C_t \\times H_t \\times W_t}$ for the teacher's last feature map (before global
        pooling), $g_T$ for its final linear classifier, $f_S(x)$ for the student's last map and $P$ for a small
        convolutional *projector* that maps the student's channels to the teacher's. SimKD minimises only

        $$\\mathcal{L}_{\\text{SimKD}} = \\frac{1}{N C_t H W} \\sum_{n=1}^{N} \\big\\| P\\big(f_S(x_n)\\big) - f_T(x_n) \\big\\|_2^2$$

        (after pooling the larger map to the smaller one's size), and predicts with

        $$\\hat{y} = g_T\\Big(\\operatorname{avgpool}\\big(P(f_S(x))\\big)\\Big).$$

        There is no cross-entropy and no KL term. If $P(f_S(x))$ equalled $f_T(x)$, the student would inherit
        the teacher's predictions exactly; all the effort goes into the features.

        In this notebook: load data, get a teacher, train a **vanilla** student (labels only) and a **SimKD**
        student of the same architecture and budget, compare them, and save a deployable SimKD student.
        """),
        md("## Parameters\n" + PROFILES_NOTE + THREADS_NOTE),
        params("import os\n\n" + textwrap.dedent(STANDARD_PARAMS).strip()),
        md("""
        ## Set-up

        Everything below calls `simkd_lite`. A *profile* (`simkd_lite.engine.profiles`) holds the whole recipe:
        models, data budget, optimiser and schedule; `EPOCHS` overrides one value.
        """),
        code('''
        import json
        from dataclasses import replace
        from pathlib import Path

        import matplotlib.pyplot as plt
        import torch
        from threadpoolctl import threadpool_limits

        from simkd_lite import SimKDStudent, viz
        from simkd_lite.checkpoints import load_model
        from simkd_lite.data import load_dataset
        from simkd_lite.distillers import FrozenTeacher
        from simkd_lite.engine.jobs import distill_student, load_teacher, train_teacher
        from simkd_lite.engine.pretrained import shipped_teacher
        from simkd_lite.engine.profiles import get_profile
        from simkd_lite.engine.runtime import seed_everything, select_device
        from simkd_lite.engine.trainer import cache_teacher_outputs, materialize, predict, top1
        from simkd_lite.models import count_parameters

        if CPU_THREADS:  # PyTorch's threads, and the BLAS/OpenMP pools of NumPy and scikit-learn (t-SNE)
            torch.set_num_threads(CPU_THREADS)
            threadpool_limits(CPU_THREADS)
        seed_everything(SEED)
        device = select_device(DEVICE)
        recipe = get_profile(PROFILE, DATASET)
        config = replace(recipe.student_config(), seed=SEED, device=DEVICE, **({"epochs": EPOCHS} if EPOCHS else {}))
        print(f"{PROFILE} profile on {DATASET}, device {device}: teacher {recipe.teacher_model}, "
              f"student {recipe.student_model}, {config.epochs} student epochs")
        '''),
        code(TEACHER_HELPER),
        code(STUDENT_HELPER),
        md("""
        ## 1. Data

        `load_dataset` returns the train and test sets plus a `DatasetInfo` (classes, channels, image size,
        normalisation). Digits ship with scikit-learn, so this works offline and instantly.
        """),
        code('''
        bundle = load_dataset(DATASET, DATA_ROOT, train_subset=recipe.train_subset, seed=SEED, augment=config.augment)
        info = bundle.info
        print(f"{info.name}: {info.train_size} train / {info.test_size} test images, {info.in_channels}x"
              f"{info.image_size}x{info.image_size}, {info.num_classes} classes")
        '''),
        md("""
        ## 2. The teacher

        A teacher file given in `TEACHER_CHECKPOINT` wins; otherwise the teacher shipped with the package for
        this data set; otherwise the profile's teacher is trained once and reused on every later run.
        """),
        code('''
        teacher = get_teacher(DATASET, recipe).to(device)
        shared = prepare(bundle, teacher, config)
        test_x, test_y = shared["test_tensors"]
        teacher_top1 = top1(predict(teacher, test_x, device), test_y)
        print(f"teacher {teacher.model_name}: {count_parameters(teacher):,} parameters, test top-1 {teacher_top1:.2f}%")
        '''),
        md("""
        ## 3. Two students, same architecture, same budget

        * **vanilla**: cross-entropy with the labels, the student's own classifier;
        * **SimKD**: the L2 loss above; the projector is trained with the student encoder, the teacher's
          classifier is copied and frozen.

        The teacher's feature maps for the (fixed) training images were computed once above, so the SimKD
        student costs only student compute.
        """),
        code('''
        results = {method: student_run(method, teacher, bundle, config, shared) for method in ("vanilla", "simkd")}
        for method, r in results.items():
            print(f"{method:8} test top-1 {r['top1']:6.2f}%   deployed parameters {r['params']:>8,} "
                  f"(extra vs. the plain student: {r['extra_params']:+,})")
        '''),
        md("""
        ## 4. The comparison, in one figure

        The dashed line is the teacher. The SimKD bar is measured through the reused teacher classifier:
        encoder → projector → global average pool → the teacher's frozen linear layer.
        """),
        code('''
        summary = {
            "dataset": DATASET, "profile": PROFILE, "seed": SEED, "device": str(device),
            "teacher": {"model": teacher.model_name, "top1": round(teacher_top1, 2), "params": count_parameters(teacher)},
            "students": [{k: (round(v, 2) if k == "top1" else v) for k, v in r.items() if k not in ("history", "distiller")}
                         for r in results.values()],
        }
        Path(RUNS).mkdir(parents=True, exist_ok=True)
        (Path(RUNS) / f"00_quickstart_{DATASET}_{PROFILE}.json").write_text(json.dumps(summary, indent=2) + "\\n")
        fig = viz.accuracy_bars(summary)
        plt.show()
        '''),
        md("""
        ## 5. Deploy: one file, no teacher

        `export()` turns the trained distiller into a `SimKDStudent`: encoder + projector + a copy of the
        teacher's classifier. It never runs (or needs) the teacher network, and `save`/`load` use one file.
        """),
        code('''
        deployed = results["simkd"]["distiller"].export()
        path = deployed.save(Path(RUNS) / f"00_quickstart_simkd_{DATASET}.pt")
        reloaded = SimKDStudent.load(path)
        reloaded_top1 = top1(predict(reloaded, test_x, device), test_y)
        print(f"{path.name}: {reloaded.num_parameters():,} parameters at inference, test top-1 {reloaded_top1:.2f}% "
              f"(training reported {results['simkd']['top1']:.2f}%)")
        assert abs(reloaded_top1 - results["simkd"]["top1"]) < 1e-6
        '''),
        md("""
        ## Conclusion

        In a few lines we trained a SimKD student whose predictions come from the teacher's own classifier,
        compared it with a vanilla student of the same size, and saved it as a single self-contained file. On
        tiny data such as digits, differences between students can be as small as the seed-to-seed noise, so
        judge them with a second `SEED`; the paper's CIFAR-100 results use bigger models and the official
        recipe (notebook 03).

        **Try next**
        * `DATASET = "fashion_mnist"`: the shipped teacher and the quick Fashion-MNIST recipe (`simkd-lite profiles`
          lists it); several minutes on a CPU instead of seconds.
        * Change `SEED` and see how much the two students move: is the difference larger than the noise?
        * Notebook 01 trains and inspects teachers, 02 dissects the projector, 03 compares SimKD with KD and
          FitNet and measures speed, 04 looks at the feature space, 05 lets you implement SimKD yourself.
        """),
    ]


# ---------------------------------------------------------------------------------------------- 01
def teacher_training():
    return [
        md("""
        # 01 · The teacher: training it, judging it, loading official checkpoints

        SimKD's student never sees a label. Everything it learns comes from the teacher's feature maps, and it
        predicts with the teacher's classifier $g_T$. So the teacher sets the ceiling: with perfectly matched
        features the student reaches *exactly* the teacher's accuracy. This notebook

        1. trains a teacher with plain cross-entropy, shows its curves and what its checkpoint holds;
        2. evaluates it, and checks the identity SimKD relies on: $\\text{logits} = g_T(\\operatorname{avgpool}(f_T(x)))$;
        3. discusses what makes a good SimKD teacher, with a table over the official model zoo;
        4. loads a checkpoint in the **official layout** (`{'model': state_dict, ...}`) — yours via
           `TEACHER_CHECKPOINT`, or one written here from a zoo model — and evaluates it;
        5. evaluates the Fashion-MNIST teacher shipped with the package (or trains a small stand-in).
        """),
        md("## Parameters\n" + PROFILES_NOTE + """
        Here `EPOCHS` is the number of **teacher** epochs (None: the profile's). `OFFICIAL_MODEL` names the
        architecture of `TEACHER_CHECKPOINT` when its path does not (official folders such as
        `resnet32x4_vanilla/` do), and `OFFICIAL_DATASET` is the data it is evaluated on.
        """ + THREADS_NOTE),
        params("import os\n\n" + textwrap.dedent(STANDARD_PARAMS).strip().replace(
            "EPOCHS = None             # student epochs; None = the profile's",
            "EPOCHS = None             # teacher epochs; None = the profile's") + '''
OFFICIAL_MODEL = None     # architecture of TEACHER_CHECKPOINT if its path does not say (e.g. "resnet32x4")
OFFICIAL_DATASET = "cifar100"  # evaluated on DATA_ROOT's copy, else on a tiny fake in the official file format
FASHION_TEST_SUBSET = 1000     # test images used to re-measure the shipped Fashion-MNIST teacher'''),
        code('''
        import json
        from dataclasses import replace
        from pathlib import Path

        import matplotlib.pyplot as plt
        import pandas as pd
        import torch
        from threadpoolctl import threadpool_limits

        from simkd_lite import analysis, create_model, viz
        from simkd_lite.checkpoints import load_model, read_checkpoint, save_teacher
        from simkd_lite.data import load_dataset, locate_dataset, write_cifar_fixture
        from simkd_lite.distillers import FrozenTeacher
        from simkd_lite.distillers.losses import global_pool
        from simkd_lite.engine.jobs import load_teacher, train_teacher
        from simkd_lite.engine.pretrained import shipped_teacher
        from simkd_lite.engine.profiles import get_profile
        from simkd_lite.engine.runtime import seed_everything, select_device
        from simkd_lite.engine.trainer import materialize, predict, top1
        from simkd_lite.models import OFFICIAL_CIFAR_MODELS, count_parameters

        if CPU_THREADS:  # PyTorch's threads, and the BLAS/OpenMP pools of NumPy and scikit-learn (t-SNE)
            torch.set_num_threads(CPU_THREADS)
            threadpool_limits(CPU_THREADS)
        seed_everything(SEED)
        device = select_device(DEVICE)
        recipe = get_profile(PROFILE, DATASET)
        teacher_config = replace(recipe.teacher, seed=SEED, device=DEVICE, **({"epochs": EPOCHS} if EPOCHS else {}))
        print(f"{PROFILE} profile on {DATASET}, device {device}: teacher {recipe.teacher_model}, "
              f"{teacher_config.epochs} epochs, lr {teacher_config.lr}, schedule {teacher_config.schedule}")
        '''),
        md("""
        ## 1. Training a teacher

        A teacher is an ordinary classifier trained with cross-entropy,
        $\\mathcal{L}_{CE} = -\\frac{1}{N}\\sum_n \\log \\operatorname{softmax}(g_T(\\operatorname{avgpool} f_T(x_n)))_{y_n}$.
        `train_teacher` writes `OUT/last.pt` after every epoch (atomically: a crash never leaves half a file)
        and `OUT/best.pt` when the test accuracy improves. With `resume=True` an unfinished run continues and
        a finished one is returned as it is, so re-running this cell costs nothing. (The run folder is named by
        its settings, so notebook 00 and this one share the same teacher.)
        """),
        code('''
        out = Path(RUNS) / f"teacher_{DATASET}_{recipe.teacher_model}_e{teacher_config.epochs}_s{SEED}"
        print(("reusing " if (out / "last.pt").exists() else "training ") + str(out))
        run = train_teacher(DATASET, recipe.teacher_model, teacher_config, out, data_root=DATA_ROOT,
                            resume=True, log=lambda message: None, progress=False)
        history = run["history"]
        print(f"{run['model']}: {run['params']:,} parameters, final test top-1 {history[-1]['test_top1']:.2f}% "
              f"after {len(history)} epochs ({sum(h['seconds'] for h in history):.0f} s of training)")
        fig = viz.run_curves(history, f"Teacher {recipe.teacher_model} on {DATASET}")
        plt.show()
        '''),
        md("""
        ### What the checkpoint holds

        The layout is the official one — `model` (the state_dict), `epoch` (completed epochs), `best_acc` —
        plus what an exact resume needs (optimizer, scheduler, RNG states, history) and what makes the file
        self-describing (`model_name`, `dataset`). Official code reads `ckpt['model']` and ignores the rest.
        """),
        code('''
        checkpoint = read_checkpoint(out / "last.pt")
        pd.DataFrame([{"key": k, "content": (f"{len(v)} tensors" if k == "model" else
                                            type(v).__name__ if isinstance(v, (dict, list)) else v)}
                      for k, v in checkpoint.items() if k in ("model", "epoch", "best_acc", "model_name", "method",
                                                              "optimizer", "scheduler", "rng", "history")])
        '''),
        md("""
        ## 2. Evaluating the teacher

        `load_model` rebuilds the architecture from the file (name, classes and input channels are read off the
        checkpoint) and returns it in eval mode. We measure the test top-1 and check, numerically, the identity
        that lets SimKD reuse the classifier: the teacher's logits are its final linear layer applied to the
        globally pooled last feature map — nothing happens in between.
        """),
        code('''
        teacher, meta = load_model(out / "last.pt")
        bundle = load_dataset(DATASET, DATA_ROOT, augment=False)
        test_x, test_y = materialize(bundle.test)
        logits = predict(teacher.to(device), test_x, device)
        with torch.no_grad():
            features = teacher.forward_features(test_x.to(device))            # (N, C_t, H_t, W_t)
            via_head = teacher.get_classifier()(global_pool(features)).cpu()  # g_T(avgpool(f_T(x)))
        print(f"test top-1 {top1(logits, test_y):.2f}% on {len(test_y)} images; feature map {tuple(features.shape[1:])}")
        print("logits == g_T(avgpool(f_T(x))):", torch.allclose(logits, via_head, atol=1e-5))
        '''),
        md("""
        ## 3. What makes a good SimKD teacher?

        * **Accuracy.** The student is read out by the teacher's classifier, so the teacher's test accuracy is
          the target the student approaches as the feature error shrinks (notebook 04 plots this).
        * **A classifier that reads the last feature map directly.** SimKD copies $g_T$ and feeds it the pooled
          projected map. Networks with a layer between that map and the classifier (MobileNetV2's final 1×1
          conv to 1280 channels, ShuffleNetV2's final conv) cannot be SimKD teachers; `simkd_lite` says so.
        * **Feature-map shape.** The teacher's channels $t$ set the projector's size
          ($s m + 9m^2 + m t + 4m + 2t$ with $m = t/\\text{factor}$, notebook 02) and its spatial size decides
          which map gets pooled.
        * **Features that transfer.** A teacher of the same family (ResNet → ResNet) is easiest to mimic; the
          paper also pairs very different architectures thanks to the projector.

        The table below reads these properties off every official CIFAR model (built on PyTorch's "meta"
        device: shapes only, no memory), with ResNet-8x4 as the student.
        """),
        code('''
        rows = []
        for name in OFFICIAL_CIFAR_MODELS:
            try:
                s = analysis.projector_summary(name, "resnet8x4", factor=2)
                rows.append({"teacher": name, "parameters": s["teacher_params"], "feature map": s["teacher_map"],
                             "SimKD teacher?": "yes", "projector params (f=2)": s["projector_params"],
                             "teacher / deployed student params": round(s["compression_ratio"], 2)})
            except ValueError:
                with torch.device("meta"):  # shapes only
                    net = create_model(name, num_classes=100)
                    feature_map = tuple(net.forward_features(torch.empty(1, 3, 32, 32)).shape[1:])
                rows.append({"teacher": name, "parameters": count_parameters(net), "feature map": feature_map,
                             "SimKD teacher?": "no: a layer sits between this map and the classifier"})
        table = pd.DataFrame(rows).set_index("teacher")
        table["projector params (f=2)"] = table["projector params (f=2)"].astype("Int64")
        table
        '''),
        code('''
        # The library refuses such a teacher with an explanation (rather than failing somewhere later):
        try:
            FrozenTeacher(create_model("MobileNetV2", num_classes=100)).classifier_copy()
        except ValueError as err:
            print("ValueError:", err)
        '''),
        md("""
        ## 4. Loading an official teacher checkpoint

        The official SimKD code (built on RepDistiller) saves teachers as
        `save/teachers/models/<model>_vanilla/<model>_best.pth` containing `{'model': state_dict, 'epoch': ...,
        'best_acc': ...}`. Set `TEACHER_CHECKPOINT` to such a file to evaluate it. Without one, we write a file
        in exactly that layout from a freshly initialised zoo ResNet-32x4 — **untrained weights**, so expect
        chance accuracy — to show the code path end to end. The architecture comes from `OFFICIAL_MODEL`, the
        file, or the official folder name.
        """),
        code('''
        if TEACHER_CHECKPOINT:
            official_path = Path(TEACHER_CHECKPOINT)
        else:
            official_path = Path(RUNS) / "official_layout/save/teachers/models/resnet32x4_vanilla/resnet32x4_best.pth"
            if not official_path.exists():
                torch.manual_seed(SEED)
                zoo = create_model("resnet32x4", num_classes=100)
                official_path.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"model": zoo.state_dict(), "epoch": 0, "best_acc": 0.0}, official_path)  # official keys only
        official, official_meta = load_model(official_path, OFFICIAL_MODEL)
        print(f"{official_path}\\n  -> {official.model_name}: {count_parameters(official):,} parameters, "
              f"{official.num_classes} classes, keys besides 'model': {sorted(k for k in official_meta if k != 'model_name')}")
        '''),
        code('''
        located = locate_dataset(OFFICIAL_DATASET, DATA_ROOT)
        if located["present"]:
            eval_root, subset, note = DATA_ROOT, None, "the real test set"
        else:  # no CIFAR here: a tiny fake in the official file format exercises the same loading code
            eval_root = Path(RUNS) / "cifar_fixture"
            write_cifar_fixture(eval_root, OFFICIAL_DATASET, n_train=20, n_test=100, seed=SEED)
            subset, note = None, "a 100-image FAKE test set in the official format (real data absent)"
        official_bundle = load_dataset(OFFICIAL_DATASET, eval_root, test_subset=subset, augment=False)
        ox, oy = materialize(official_bundle.test)
        official_top1 = top1(predict(official.to(device), ox, device), oy)
        print(f"{official.model_name} on {note}: top-1 {official_top1:.2f}% "
              f"(chance is {100 / official_bundle.info.num_classes:.2f}%)")
        '''),
        md("""
        ## 5. The shipped Fashion-MNIST teacher

        The package ships a Fashion-MNIST teacher for the quick profile, with a provenance record (the command
        that made it, its seed and measured accuracy). We re-measure it on `FASHION_TEST_SUBSET` test images.
        When it is not there (or Fashion-MNIST is missing), a small stand-in teacher is trained on a seeded
        subset instead — good enough to run the rest of the series, not to cite.
        """),
        code('''
        fashion_present = locate_dataset("fashion_mnist", DATA_ROOT)["present"]
        shipped = shipped_teacher("fashion_mnist")
        if not fashion_present:
            print("Fashion-MNIST is not under", DATA_ROOT, "- see data/README.md; skipping this section.")
        else:
            fashion = load_dataset("fashion_mnist", DATA_ROOT, test_subset=FASHION_TEST_SUBSET, seed=SEED, augment=False)
            if shipped is not None:
                path, record = shipped
                fashion_teacher = load_teacher(None, "fashion_mnist", log=print)[0]
                print(f"record: {json.dumps({k: record[k] for k in record if k in ('model', 'test_top1', 'seed')})}")
            else:
                fashion_recipe = get_profile("quick", "fashion_mnist")
                stand_in = replace(fashion_recipe.teacher, epochs=3, augment=False, seed=SEED, device=DEVICE)
                stand_out = Path(RUNS) / f"teacher_fashion_mnist_resnet8_e3_s{SEED}"
                print("no shipped teacher yet: training (or reusing) a small resnet8 stand-in in", stand_out)
                train_teacher("fashion_mnist", "resnet8", stand_in, stand_out, data_root=DATA_ROOT, train_subset=3000,
                              resume=True, log=lambda message: None, progress=False)
                fashion_teacher = load_model(stand_out / "last.pt")[0]
            fx, fy = materialize(fashion.test)
            print(f"{fashion_teacher.model_name} on {len(fy)} Fashion-MNIST test images: "
                  f"top-1 {top1(predict(fashion_teacher.to(device), fx, device), fy):.2f}%")
        '''),
        md("""
        ## Conclusion

        A teacher is trained like any classifier, but for SimKD its *last feature map* and its *classifier*
        are what the student inherits: the classifier must read that map directly, and its accuracy is the
        student's ceiling. Checkpoints in the official layout load as they are — the architecture comes from
        the file or its folder name — and every run here is resumable and reused.

        **Try next**
        * Point `TEACHER_CHECKPOINT` at an official `resnet32x4_best.pth` and `DATA_ROOT` at CIFAR-100.
        * Train a weaker teacher (`EPOCHS = 3`) and pass its `last.pt` as `TEACHER_CHECKPOINT` to notebook 00: does
          the SimKD student follow it down?
        * In the table, compare the compression ratios of ResNet-32x4 and VGG-13 teachers for the same student.
        """),
    ]


# ---------------------------------------------------------------------------------------------- 02
def projector_design():
    return [
        md("""
        # 02 · Designing the projector

        The projector $P$ is the only new module SimKD adds. It maps the student's last map
        ($s$ channels) to the teacher's ($t$ channels) through a bottleneck of $m = \\lfloor t / \\text{factor} \\rfloor$
        channels:

        $$P = \\underbrace{\\text{conv}_{1\\times1}(s \\to m)\\,\\text{BN}\\,\\text{ReLU}}_{\\texttt{transfer.0-2}}
        \\;\\to\\; \\underbrace{\\text{conv}_{3\\times3}(m \\to m)\\,\\text{BN}\\,\\text{ReLU}}_{\\texttt{transfer.3-5}}
        \\;\\to\\; \\underbrace{\\text{conv}_{1\\times1}(m \\to t)\\,\\text{BN}\\,\\text{ReLU}}_{\\texttt{transfer.6-8}}$$

        The convolutions have no bias (each is followed by BatchNorm, whose shift plays that role), so

        $$\\#P = \\underbrace{s m}_{1\\times1} + \\underbrace{9 m^2}_{3\\times3} + \\underbrace{m t}_{1\\times1}
        + \\underbrace{2m + 2m + 2t}_{\\text{BN scale and shift}} = s m + 9m^2 + m t + 4m + 2t .$$

        This notebook dissects it (shapes, parameters, compression), trains four design variants briefly, and
        ends with an interactive designer.
        """),
        md("## Parameters\n" + PROFILES_NOTE + """
        The variant experiment distils `VARIANT_STUDENT` from `VARIANT_TEACHER` on `DATASET`: by default
        ResNet-8 from ResNet-14 on digits — a miniature of the paper's ResNet-8x4 ← ResNet-32x4 (same widths,
        fewer blocks, equal channel counts, so the "no projector" variant is possible). `EPOCHS` is the epochs
        per variant (None: 10 in quick; with `PROFILE="paper"` the profile's 240 and the paper's pair).
        """ + THREADS_NOTE),
        params('''
        import os

        DATASET = "digits"
        PROFILE = os.environ.get("SIMKD_PROFILE", "quick")
        EPOCHS = None             # epochs per projector variant; None = 10 (quick) or the profile's (paper)
        DEVICE = None
        SEED = 0
        DATA_ROOT = "../data"
        RUNS = "../runs/notebooks"
        VARIANT_TEACHER = "resnet14"   # paper: "resnet32x4"
        VARIANT_STUDENT = "resnet8"    # paper: "resnet8x4"
        TEACHER_CHECKPOINT = None      # paper: a trained resnet32x4; quick: None = reuse or train VARIANT_TEACHER
        FACTOR = 2
        CPU_THREADS = 1
        '''),
        code('''
        import json
        from dataclasses import replace
        from pathlib import Path

        import matplotlib.pyplot as plt
        import pandas as pd
        import torch
        from threadpoolctl import threadpool_limits
        from torch import nn

        from simkd_lite import SimKD, analysis, create_distiller, create_model, viz, widgets
        from simkd_lite.checkpoints import load_model
        from simkd_lite.data import load_dataset
        from simkd_lite.distillers import FrozenTeacher, projector_parameter_count
        from simkd_lite.distillers.losses import align_feature_maps
        from simkd_lite.engine.jobs import train_teacher
        from simkd_lite.engine.profiles import get_profile
        from simkd_lite.engine.runtime import seed_everything, select_device
        from simkd_lite.engine.trainer import TrainConfig, cache_teacher_outputs, fit, materialize, predict, top1
        from simkd_lite.models import count_parameters

        if CPU_THREADS:  # PyTorch's threads, and the BLAS/OpenMP pools of NumPy and scikit-learn (t-SNE)
            torch.set_num_threads(CPU_THREADS)
            threadpool_limits(CPU_THREADS)
        seed_everything(SEED)
        device = select_device(DEVICE)
        print("device", device)
        '''),
        md("""
        ## 1. Anatomy and shapes

        The paper's main pair: ResNet-32x4 teacher and ResNet-8x4 student, both ending in a 256×8×8 map. We
        push a random batch through `SimKD(256, 256, factor=2)` layer by layer. Only channels change; the 3×3
        convolution (padding 1) keeps the spatial size.
        """),
        code('''
        simkd = SimKD(student_channels=256, teacher_channels=256, factor=2)
        x = torch.randn(2, 256, 8, 8)
        rows = [{"layer": "input (student map)", "output shape": tuple(x.shape), "parameters": 0}]
        with torch.no_grad():
            for index, layer in enumerate(simkd.transfer):
                x = layer(x)
                rows.append({"layer": f"transfer.{index} {type(layer).__name__}", "output shape": tuple(x.shape),
                             "parameters": count_parameters(layer)})
        pd.DataFrame(rows)
        '''),
        md("""
        **Spatial alignment.** When the two maps differ in size, the *larger* one is adaptive-average-pooled to
        the smaller one's size (nothing is invented by upsampling), *before* the projector. VGG-8 ends in
        512×4×4 while ResNet-32x4 ends in 256×8×8, so the teacher's map is pooled:
        """),
        code('''
        feat_s, feat_t = torch.randn(2, 512, 4, 4), torch.randn(2, 256, 8, 8)   # VGG-8 student, ResNet-32x4 teacher
        aligned_s, aligned_t = align_feature_maps(feat_s, feat_t)
        projected, target, logits = SimKD(512, 256, 2)(feat_s, feat_t, nn.Linear(256, 100))
        print("aligned:", tuple(aligned_s.shape), tuple(aligned_t.shape), "| projected:", tuple(projected.shape),
              "| target:", tuple(target.shape), "| logits:", tuple(logits.shape))
        '''),
        md("""
        ## 2. Parameter count and compression

        The closed form must agree with counting the module's parameters, and for ResNet-32x4 → ResNet-8x4
        it must give the parameter counts known for the official code at factors 2, 4 and 8: 214,016, 70,400
        and 26,240. The table covers the paper's three students of a ResNet-32x4 teacher.
        *Compression ratio* = teacher parameters / deployed student parameters, where the deployed student is
        encoder + projector + the copied teacher classifier (the student's own classifier is dropped).
        """),
        code('''
        STATED = {2: 214_016, 4: 70_400, 8: 26_240}   # ResNet-32x4 -> ResNet-8x4, as stated for the official code
        rows = []
        for student in ("resnet8x4", "vgg8", "ShuffleV2_1_5"):
            for factor in (2, 4, 8):
                s = analysis.projector_summary("resnet32x4", student, factor)
                rows.append({"student": student, "factor": factor, "s -> m -> t":
                             f"{s['student_map'][0]} -> {s['bottleneck']} -> {s['teacher_map'][0]}",
                             "projector (formula)": s["formula_params"], "projector (counted)": s["projector_params"],
                             "student encoder": s["student_encoder_params"], "deployed": s["deployed_params"],
                             "teacher": s["teacher_params"], "compression": round(s["compression_ratio"], 2),
                             "projector MMACs": round(s["projector_macs"] / 1e6, 2)})
        table = pd.DataFrame(rows)
        assert (table["projector (formula)"] == table["projector (counted)"]).all()
        for factor, value in STATED.items():
            assert projector_parameter_count(256, 256, factor) == value
            assert count_parameters(SimKD(256, 256, factor)) == value
        print("ResNet-32x4 -> ResNet-8x4 projector:", {f: f"{v:,}" for f, v in STATED.items()}, "reproduced")
        table
        '''),
        md("""
        The 3×3 convolution dominates ($9m^2$), so halving the bottleneck roughly quarters the projector. The
        paper reports that the accuracy of ResNet-8x4 drops only slowly from factor 2 to 8 (published CIFAR-100
        top-1, not measured here):
        """),
        code('''
        PUBLISHED_RESNET8X4 = {"factor 8": 76.73, "factor 4": 77.88, "factor 2": 78.08}   # paper, CIFAR-100 top-1 (%)
        pd.Series(PUBLISHED_RESNET8X4, name="published top-1 (%) of ResNet-8x4, teacher ResNet-32x4 (79.42)")
        '''),
        md("""
        ## 3. Variants, trained briefly

        Four ways to map the student's map onto the teacher's, each trained with SimKD's loss and the reused
        teacher classifier, everything else equal:

        | variant | layers | extra parameters |
        |---|---|---|
        | no projector | identity (needs $s = t$) | 0 |
        | 1×1 only | conv1×1(s→t) BN ReLU | $st + 2t$ |
        | depthwise 3×3 | conv1×1(s→m) BN ReLU, **depthwise** conv3×3(m) BN ReLU, conv1×1(m→t) BN ReLU | $sm + 9m + mt + 4m + 2t$ |
        | SimKD bottleneck | the official projector | $sm + 9m^2 + mt + 4m + 2t$ |

        A variant is just a different `transfer` module inside the same `SimKD` distiller.
        """),
        code('''
        def make_projector(kind, s, t, factor):
            """A `transfer` module mapping (N, s, H, W) -> (N, t, H, W)."""
            m = t // factor
            block = lambda cin, cout, k=1, groups=1: [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False),
                                                      nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if kind == "no projector":
                if s != t:
                    raise ValueError(f"no projector needs equal channels, got {s} and {t}")
                return nn.Identity()
            if kind == "1x1 only":
                return nn.Sequential(*block(s, t))
            if kind == "depthwise 3x3":
                return nn.Sequential(*block(s, m), *block(m, m, 3, groups=m), *block(m, t))
            if kind == "SimKD bottleneck":
                return SimKD(s, t, factor).transfer
            raise ValueError(f"unknown projector {kind!r}")

        VARIANTS = ["no projector", "1x1 only", "depthwise 3x3", "SimKD bottleneck"]
        '''),
        code('''
        quiet = lambda message: None
        quick = PROFILE == "quick"
        variant_dataset = DATASET if quick else "cifar100"
        recipe = get_profile(PROFILE, variant_dataset)
        base = recipe.student if not quick else TrainConfig(epochs=10, batch_size=64, lr=0.05, schedule="onecycle",
                                                             augment=False, cache_teacher=True)
        student_config = replace(base, seed=SEED, device=DEVICE, **({"epochs": EPOCHS} if EPOCHS else {}))

        # The teacher: a given checkpoint, else trained once with the profile's teacher recipe and reused.
        if TEACHER_CHECKPOINT:
            teacher = load_model(TEACHER_CHECKPOINT)[0]
        else:
            teacher_out = Path(RUNS) / f"teacher_{variant_dataset}_{VARIANT_TEACHER}_e{recipe.teacher.epochs}_s{SEED}"
            print(("reusing " if (teacher_out / "last.pt").exists() else "training ") + str(teacher_out))
            train_teacher(variant_dataset, VARIANT_TEACHER, replace(recipe.teacher, seed=SEED, device=DEVICE), teacher_out,
                          data_root=DATA_ROOT, resume=True, log=quiet, progress=False)
            teacher = load_model(teacher_out / "last.pt")[0]

        bundle = load_dataset(variant_dataset, DATA_ROOT, augment=student_config.augment)
        test_x, test_y = materialize(bundle.test)
        shared = {"test_tensors": (test_x, test_y)}
        if not student_config.augment:
            train_x, train_y = materialize(bundle.train)
            shared |= {"train_tensors": (train_x, train_y),
                       "teacher_cache": cache_teacher_outputs(FrozenTeacher(teacher.to(device)), train_x, device)}
        teacher_top1 = top1(predict(teacher.to(device), test_x, device), test_y)
        print(f"teacher {teacher.model_name}: {teacher_top1:.2f}%  | {student_config.epochs} epochs per variant")
        '''),
        code('''
        def train_variant(kind):
            """Train (or reuse) one variant; returns its row for the table and the figure."""
            seed_everything(SEED)
            student = create_model(VARIANT_STUDENT, bundle.info.num_classes, bundle.info.in_channels)
            distiller = create_distiller("simkd", student, teacher, factor=FACTOR)
            distiller.simkd.transfer = make_projector(kind, student.feature_channels, teacher.feature_channels, FACTOR)
            out = Path(RUNS) / f"02_variant_{variant_dataset}_{VARIANT_TEACHER}-{VARIANT_STUDENT}_{kind.replace(' ', '_')}" \\
                               f"_f{FACTOR}_e{student_config.epochs}_s{SEED}"
            history = fit(distiller, bundle.train, bundle.test, student_config, out, resume=True, log=None,
                          progress=False, **shared)
            return {"name": kind, "extra_params": count_parameters(distiller.simkd), "top1": history[-1]["test_top1"]}

        variants = [train_variant(kind) for kind in VARIANTS]
        seed_everything(SEED)
        vanilla = create_distiller("vanilla", create_model(VARIANT_STUDENT, bundle.info.num_classes, bundle.info.in_channels))
        vanilla_top1 = fit(vanilla, bundle.train, bundle.test, student_config,
                           Path(RUNS) / f"02_vanilla_{variant_dataset}_{VARIANT_STUDENT}_e{student_config.epochs}_s{SEED}",
                           resume=True, log=None, progress=False, **shared)[-1]["test_top1"]
        (Path(RUNS) / f"02_projector_variants_{variant_dataset}_{PROFILE}.json").write_text(
            json.dumps({"teacher_top1": teacher_top1, "vanilla_top1": vanilla_top1, "variants": variants}, indent=2))
        pd.DataFrame(variants).set_index("name")
        '''),
        code('''
        fig = viz.projector_tradeoff(variants, baseline_top1=vanilla_top1, teacher_top1=teacher_top1)
        plt.show()
        '''),
        md("""
        Read the figure with care: after a few epochs on 8×8 digits, accuracy differences between variants may
        be no larger than the change you get from another `SEED` — re-run with one before drawing conclusions.
        The figure shows the *cost* side of the trade-off exactly and the accuracy side roughly; a ranking you
        can trust needs the full recipe on CIFAR-100.
        """),
        md("""
        ## 4. An interactive projector designer

        Choose a teacher, a student and a factor: the designer shows the alignment, the layer shapes, the
        parameters (formula and count), the multiply-accumulates for one 32×32 image and the compression
        ratio. Models are built on the "meta" device, so even the largest is instant. (In a static or headless
        run the widget has no live output; the cell after it calls the same functions directly.)
        """),
        code('''
        widgets.projector_designer(teacher="resnet32x4", student="resnet8x4", factor=FACTOR)
        '''),
        code('''
        summary = analysis.projector_summary("resnet32x4", "resnet8x4", FACTOR)   # what the widget calls
        print(widgets.describe_projector(summary))
        fig = viz.parameter_breakdown(summary)
        plt.show()
        '''),
        md("""
        ## Conclusion

        The projector is small and fully determined by $(s, t, \\text{factor})$: $sm + 9m^2 + mt + 4m + 2t$
        parameters, dominated by the 3×3 convolution. The deployed SimKD student is encoder + projector + the
        teacher's classifier, so its compression ratio depends on all three. Cheaper variants exist (1×1 only,
        depthwise 3×3, none when channels match); brief training on tiny data cannot rank them reliably, but
        it shows the trade-off you would measure at scale.

        **Try next**
        * `FACTOR = 8` in the designer and the variant experiment: how much smaller, how much worse?
        * In the designer, pair `resnet32x4` with `MobileNetV2` as the student, then as the teacher.
        * Add your own variant to `make_projector` (e.g. two 3×3 layers) and append it to `VARIANTS`.
        """),
    ]


# ---------------------------------------------------------------------------------------------- 03
def gpu_distillation():
    return [
        md("""
        # 03 · Distillation on a GPU: speed, and SimKD vs. KD vs. FitNet

        This notebook runs on whatever device it finds. It explains what changes on a GPU, measures inference
        throughput — the deployed SimKD student against the *official-style* evaluation that also runs the
        teacher — and compares SimKD with the classic baselines under the same budget:

        * **vanilla**: $\\mathcal{L} = \\mathcal{L}_{CE}(s(x), y)$;
        * **KD** (Hinton et al.): $\\mathcal{L} = a\\,\\mathcal{L}_{CE} + b\\,T^2\\,\\mathrm{KL}\\big(\\sigma(z_T/T)\\,\\|\\,\\sigma(z_S/T)\\big)$
          (official CIFAR-100 scripts: $a=0.1$, $b=0.9$, $T=4$);
        * **FitNet**: $\\mathcal{L} = \\mathcal{L}_{CE} + w\\,\\| r(f_S(x)) - f_T(x) \\|^2$ with a regressor $r$ (official $w=100$);
        * **SimKD**: $\\mathcal{L} = \\| P(f_S(x)) - f_T(x) \\|^2$ only, predictions through the teacher's classifier.
        """),
        md("## Parameters\n" + PROFILES_NOTE + """
        With `PROFILE="paper"`, `DATASET="cifar100"` and a ResNet-32x4 `TEACHER_CHECKPOINT`, section 3 trains
        the ResNet-8x4 students with the official recipe (240 epochs each; the official code reports 1 h 24 min
        for SimKD on one RTX 2080 Ti) and section 4 compares SimKD with the paper's published 78.08%.
        `BENCH_IMAGES` is the number of test images timed for throughput.
        """ + THREADS_NOTE),
        params("import os\n\n" + textwrap.dedent(STANDARD_PARAMS).strip() + '''
METHODS = ("vanilla", "kd", "fitnet", "simkd")
BENCH_IMAGES = 2048       # test images timed per inference-throughput measurement
BENCH_STEPS = 10          # timed steps of engine.bench.run_bench'''),
        code('''
        import json
        import platform
        from dataclasses import fields, replace
        from pathlib import Path

        import matplotlib.pyplot as plt
        import pandas as pd
        import torch
        from threadpoolctl import threadpool_limits

        from simkd_lite import analysis, create_model, viz
        from simkd_lite.checkpoints import load_model
        from simkd_lite.data import load_dataset
        from simkd_lite.distillers import FrozenTeacher
        from simkd_lite.engine.bench import machine_info, run_bench
        from simkd_lite.engine.fast import GpuAugment, fold_batchnorm, to_uint8_tensors
        from simkd_lite.engine.jobs import distill_student, load_teacher, train_teacher
        from simkd_lite.engine.pretrained import shipped_teacher
        from simkd_lite.engine.profiles import get_profile
        from simkd_lite.engine.runtime import seed_everything, select_device
        from simkd_lite.engine.trainer import cache_teacher_outputs, materialize, predict, top1

        if CPU_THREADS:  # PyTorch's threads, and the BLAS/OpenMP pools of NumPy and scikit-learn (t-SNE)
            torch.set_num_threads(CPU_THREADS)
            threadpool_limits(CPU_THREADS)
        seed_everything(SEED)
        recipe = get_profile(PROFILE, DATASET)
        config = replace(recipe.student_config(), seed=SEED, device=DEVICE, **({"epochs": EPOCHS} if EPOCHS else {}))
        '''),
        code(TEACHER_HELPER),
        code(STUDENT_HELPER),
        md("""
        ## 1. Device discovery

        `select_device` picks CUDA, then Apple's MPS, then the CPU (or exactly what `DEVICE` says, with a
        clear error when it is not there).
        """),
        code('''
        device = select_device(DEVICE)
        facts = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                 "cpu threads": torch.get_num_threads(), "cuda available": torch.cuda.is_available(),
                 "mps available": torch.backends.mps.is_available()}
        if device.type == "cuda":
            props = torch.cuda.get_device_properties(device)
            facts |= {"gpu": props.name, "gpu memory (GiB)": round(props.total_memory / 2**30, 1),
                      "compute capability": f"{props.major}.{props.minor}", "bf16": torch.cuda.is_bf16_supported()}
        pd.Series(facts, name="value").to_frame()
        '''),
        md("""
        ## 2. What changes on a GPU

        * **Mixed precision (AMP).** `torch.autocast` runs convolutions in bfloat16/float16 on tensor cores,
          which have far more half-precision throughput, while keeping reductions such as SimKD's MSE in
          float32. With float16 a `GradScaler` keeps small gradients from underflowing; bfloat16 needs none.
        * **channels_last.** Tensor-core convolutions prefer NHWC memory; converting the models and inputs
          once avoids a layout conversion in every layer.
        * **Data on the GPU, augmented there.** CIFAR-100's 50,000 training images are 150 MB as uint8: they fit
          on the GPU. Cropping, flipping and normalising whole batches with tensor ops there removes the
          DataLoader (PIL, worker processes, host-to-device copies) that otherwise starves small models.
        * **A cheaper frozen teacher.** In eval mode a BatchNorm is a per-channel affine map, so it can be folded
          into the convolution before it — exact up to rounding, one pass over every activation saved.
        * **No teacher forward at evaluation.** The official evaluation runs the teacher on every test batch only
          to read its feature-map shape (official issue #2: the student looked slower than the teacher). A
          deployed SimKD student needs the teacher's *classifier* only.

        In `simkd_lite` these are switches of `TrainConfig`, used by `fit` (see `simkd_lite/engine/fast.py`):
        """),
        code('''
        bundle = load_dataset(DATASET, DATA_ROOT, train_subset=recipe.train_subset, seed=SEED, augment=config.augment)
        info = bundle.info
        test_x, test_y = materialize(bundle.test)
        # the boolean speed switches of TrainConfig (everything boolean except what changes the recipe itself)
        switches = [f.name for f in fields(config) if f.type in (bool, "bool")
                    and f.name not in ("nesterov", "augment", "cache_teacher")]
        pd.Series({k: getattr(config, k) for k in switches}, name=f"{PROFILE} profile, student config").to_frame()
        '''),
        md("""
        Each idea, run on this device (on a CPU they work too; they are just not faster there). First AMP and
        channels_last on one batch: the values barely change, the memory layout does.
        """),
        code('''
        net = create_model(recipe.student_model, info.num_classes, info.in_channels).to(device).eval()
        amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        batch = test_x[:256].to(device)
        with torch.no_grad():
            full = net(batch)
            with torch.autocast(device.type, dtype=amp_dtype):
                half = net(batch)
            maps = net.forward_features(batch)                        # (N, C, H, W), NCHW memory
            net_cl = net.to(memory_format=torch.channels_last)        # converts the module in place
            batch_cl = batch.contiguous(memory_format=torch.channels_last)
            maps_cl = net_cl.forward_features(batch_cl)
            same = torch.allclose(net_cl(batch_cl), full, atol=1e-4)
        print(f"autocast({amp_dtype}): logits dtype {half.dtype}, max |difference| vs float32 "
              f"{(half.float() - full).abs().max().item():.4f}, same argmax on "
              f"{(half.argmax(1) == full.argmax(1)).float().mean().item():.1%} of images")
        print(f"feature map {tuple(maps.shape)}: strides NCHW {maps.stride()} vs channels_last {maps_cl.stride()} "
              f"(channel is the fastest-moving index); same logits: {same}")
        '''),
        md("""
        **On-device augmentation.** `GpuAugment` is the official train transform — pad and random-crop, random
        horizontal flip, normalise — for a whole uint8 batch at once on the batch's device, with a seeded
        generator. (For 8×8 digits we pad by 1 and do not flip: a mirrored digit is another symbol.)
        """),
        code('''
        try:
            raw_x, _ = to_uint8_tensors(bundle.test)   # torchvision-style data sets keep their raw uint8 images
        except TypeError:                              # digits are stored normalised: undo it
            mean, std = torch.tensor(info.mean).view(1, -1, 1, 1), torch.tensor(info.std).view(1, -1, 1, 1)
            raw_x = ((test_x * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
        small = info.image_size <= 8
        augment = GpuAugment(info.mean, info.std, padding=1 if small else 4, flip=not small).to(device)
        plain = GpuAugment(info.mean, info.std, padding=0, flip=False).to(device)
        generator = torch.Generator(device=device).manual_seed(SEED)
        raw = raw_x[:8].to(device)
        fig = viz.image_grid({"original": plain(raw).cpu().numpy(), "augmented": augment(raw, generator).cpu().numpy()},
                             info.mean, info.std, labels=[info.class_names[int(y)] for y in test_y[:8]],
                             title=f"GpuAugment on {device}: test images and one random crop{' + flip' if not small else ''}")
        plt.show()
        '''),
        md("""
        **BatchNorm folding.** The frozen teacher with every BN merged into its convolution computes the same
        logits with fewer layers:
        """),
        code('''
        teacher = get_teacher(DATASET, recipe).to(device).eval()
        folded = fold_batchnorm(teacher, test_x[:2].to(device))
        with torch.no_grad():
            difference = (folded(test_x[:256].to(device)) - teacher(test_x[:256].to(device))).abs().max().item()
        print(f"{teacher.model_name}: folded {len(folded.folded_batchnorms)} BatchNorms; "
              f"BatchNorm2d modules left: {len(folded.unfolded_batchnorms)}; max |logit difference| {difference:.2e}")
        '''),
        md("""
        ## 3. Students, and inference throughput

        The teacher comes from `TEACHER_CHECKPOINT`, the package, or a reused/trained run; students are trained
        (or reused: runs are named by their settings, and notebook 00 trains the same vanilla and SimKD ones).
        """),
        code('''
        shared = prepare(bundle, teacher, config)
        teacher_top1 = top1(predict(teacher, test_x, device), test_y)
        runs = {method: student_run(method, teacher, bundle, config, shared) for method in METHODS}
        print("method options of this profile:", recipe.method_options)
        pd.DataFrame([{"method": m, "test top-1 (%)": round(r["top1"], 2), "deployed params": r["params"],
                       "extra params": r["extra_params"], "train seconds (0 if reused)": r["seconds"]}
                      for m, r in runs.items()]).set_index("method")
        '''),
        md("""
        Now the speed of four inference paths on the test images:

        * **deployed SimKD student** — `SimKDStudent`: encoder → projector → teacher classifier;
        * the same with **BN folded and channels_last** (and, on CUDA, float16 autocast);
        * **official-style SimKD evaluation** — the deployed path plus a full teacher forward per batch;
        * the **teacher** alone, for reference.

        Throughput is images per second, best of three timed passes after a warm-up
        (`analysis.measure_throughput`); on a GPU the clock waits for the device.
        """),
        code('''
        deployed = runs["simkd"]["distiller"].export().to(device).eval()
        fast = fold_batchnorm(deployed, test_x[:2].to(device)).to(memory_format=torch.channels_last)
        frozen = FrozenTeacher(teacher)

        def deployed_fast(x):
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                return fast(x.contiguous(memory_format=torch.channels_last))

        def official_style(x):
            frozen(x)                # a full teacher forward, only to know the teacher's feature shape
            return deployed(x)

        bench_x = test_x.repeat((BENCH_IMAGES + len(test_x) - 1) // len(test_x), 1, 1, 1)[:BENCH_IMAGES]
        throughput = {
            "deployed SimKD student": analysis.measure_throughput(deployed, bench_x, device),
            "deployed, BN folded + channels_last" + (" + AMP" if device.type == "cuda" else ""):
                analysis.measure_throughput(deployed_fast, bench_x, device),
            "official-style (teacher + student)": analysis.measure_throughput(official_style, bench_x, device),
            f"teacher {teacher.model_name}": analysis.measure_throughput(teacher, bench_x, device),
        }
        machine = machine_info(device)
        device_name = f"{device.type}: {machine['device_name']}"
        (Path(RUNS) / f"03_throughput_{DATASET}_{device.type}.json").write_text(
            json.dumps({"machine": machine, "images": BENCH_IMAGES, "images_per_second": throughput}, indent=2))
        speedup = throughput["deployed SimKD student"] / throughput["official-style (teacher + student)"]
        print(f"deployed student vs official-style evaluation on {device_name}: {speedup:.2f}x the images per second")
        fig = viz.throughput_bars(throughput, device_name)
        plt.show()
        '''),
        md("""
        **Training steps too.** `simkd_lite.engine.bench.run_bench` times a SimKD training step and inference
        both ways — the fast path (`fit`'s loop body: prepared teacher, channels_last, optional AMP/compile) and
        the official loop — from the same initial weights on random images of this data set's size (speed does
        not depend on pixel values; the first-step losses must agree, which shows both compute the same thing).
        `simkd-lite bench` runs the same from the command line.
        """),
        code('''
        bench = run_bench(recipe.teacher_model, recipe.student_model, image_size=info.image_size,
                          in_channels=info.in_channels, num_classes=info.num_classes, steps=BENCH_STEPS, warmup=2,
                          device=DEVICE, amp=device.type == "cuda", seed=SEED)
        (Path(RUNS) / f"03_bench_{DATASET}_{device.type}.json").write_text(json.dumps(bench, indent=2))
        pd.DataFrame({"fast path": [bench["train_images_per_s"], bench["infer_images_per_s"]],
                      "official path": [bench["baseline_train_images_per_s"], bench["baseline_infer_images_per_s"]],
                      "speed-up": [bench["train_speedup"], bench["infer_speedup"]]},
                     index=["training step (images/s)", "inference (images/s)"])
        '''),
        md("""
        ## 4. SimKD vs. KD vs. FitNet vs. vanilla

        Same student architecture, same epochs, same data and seed for every method. Accuracy for SimKD is
        measured through the reused teacher classifier; for the others, through the student's own classifier.
        """),
        code('''
        results = {"dataset": DATASET, "profile": PROFILE, "seed": SEED, "device": str(device),
                   "teacher": {"model": teacher.model_name, "top1": round(teacher_top1, 2)},
                   "students": [{"method": m, "model": r["model"], "top1": round(r["top1"], 2), "params": r["params"],
                                 "extra_params": r["extra_params"]} for m, r in runs.items()]}
        (Path(RUNS) / f"03_methods_{DATASET}_{PROFILE}.json").write_text(json.dumps(results, indent=2))
        fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
        viz.accuracy_bars(results, ax=axes[0])
        viz.training_curves({m: r["history"] for m, r in runs.items()}, ax=axes[1])
        fig.tight_layout()
        plt.show()
        '''),
        md("""
        **The paper's numbers.** For reference, these are the CIFAR-100 top-1 accuracies *published* in the
        paper for a ResNet-32x4 teacher (79.42%) and a ResNet-8x4 student; they are quoted, not measured here.
        With `PROFILE="paper"`, `DATASET="cifar100"` and a teacher checkpoint, the cell above trains these
        students with the official recipe and the cell below puts your measurement next to them.
        """),
        code('''
        PUBLISHED = {"teacher (ResNet-32x4)": 79.42, "vanilla": 73.09, "kd": 74.42, "fitnet": 74.32, "simkd": 78.08}
        comparison = pd.DataFrame({"published top-1, CIFAR-100 (%)": PUBLISHED})
        official_setting = (PROFILE == "paper" and DATASET == "cifar100" and teacher.model_name == "resnet32x4"
                            and recipe.student_model == "resnet8x4")
        if official_setting:
            comparison["measured here (%)"] = pd.Series({"teacher (ResNet-32x4)": teacher_top1,
                                                        **{m: r["top1"] for m, r in runs.items()}})
            print(f"SimKD ResNet-8x4: measured {runs['simkd']['top1']:.2f}% vs. the paper's published 78.08%")
        else:
            print(f"Not the official setting ({PROFILE}/{DATASET}/{teacher.model_name} -> {recipe.student_model}): "
                  "the published numbers are shown for reference only.")
        comparison
        '''),
        md("""
        ## Conclusion

        On a GPU, throughput comes from keeping the device busy: mixed precision, channels_last, data and
        augmentation on the device, and not running networks you do not need. A deployed SimKD student needs
        only the teacher's classifier, so evaluating it with a full teacher forward (as the official code does)
        wastes most of the time — the throughput figure above measures how much on this device. The method
        comparison is measured under one small budget; the published CIFAR-100 numbers need the paper profile.

        **Try next**
        * On a GPU machine: `DEVICE = "cuda"` and a larger `BENCH_IMAGES`; compare the AMP + channels_last bar.
        * `DATASET = "fashion_mnist"` (shipped teacher): do the method gaps grow on harder data?
        * The paper run: `PROFILE="paper"`, `DATASET="cifar100"`, `TEACHER_CHECKPOINT=".../resnet32x4_best.pth"`.
        """),
    ]


# ---------------------------------------------------------------------------------------------- 04
def feature_space():
    return [
        md("""
        # 04 · Inside the feature space

        SimKD's claim is geometric: if the projected student features coincide with the teacher's, the
        teacher's classifier gives the teacher's answers. This notebook looks at that directly:

        1. 2-D maps (PCA, t-SNE) of pooled features of the teacher, the SimKD student (after the projector) and a
           vanilla student, coloured by class;
        2. per-class cosine similarity between SimKD and teacher features;
        3. the feature error and the agreement with the teacher's predictions, epoch by epoch;
        4. confusion matrices;
        5. the paper's argument made visible: feed the teacher's classifier
           $h_\\alpha = (1-\\alpha)\\,\\bar{f}_S + \\alpha\\,\\bar{f}_T$ (pooled features) and watch the accuracy go to
           the teacher's at $\\alpha = 1$;
        6. an interactive feature explorer.
        """),
        md("## Parameters\n" + PROFILES_NOTE + """
        `MAX_POINTS` caps the points per 2-D map (t-SNE is quadratic); `TRACK_EPOCHS` is the length of the
        epoch-by-epoch run of section 3.
        """ + THREADS_NOTE),
        params("import os\n\n" + textwrap.dedent(STANDARD_PARAMS).strip() + '''
MAX_POINTS = 360          # points per 2-D map (t-SNE: keep it <= 500 on a CPU)
TRACK_EPOCHS = 8          # epochs of the run tracked epoch by epoch'''),
        code('''
        import json
        import shutil
        from dataclasses import replace
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd
        import torch
        from threadpoolctl import threadpool_limits

        from simkd_lite import analysis, create_distiller, create_model, viz, widgets
        from simkd_lite.checkpoints import load_model
        from simkd_lite.data import load_dataset
        from simkd_lite.distillers import FrozenTeacher
        from simkd_lite.engine.jobs import distill_student, load_teacher, train_teacher
        from simkd_lite.engine.pretrained import shipped_teacher
        from simkd_lite.engine.profiles import get_profile
        from simkd_lite.engine.runtime import seed_everything, select_device
        from simkd_lite.engine.trainer import cache_teacher_outputs, fit, materialize, predict, top1

        if CPU_THREADS:  # PyTorch's threads, and the BLAS/OpenMP pools of NumPy and scikit-learn (t-SNE)
            torch.set_num_threads(CPU_THREADS)
            threadpool_limits(CPU_THREADS)
        seed_everything(SEED)
        device = select_device(DEVICE)
        recipe = get_profile(PROFILE, DATASET)
        config = replace(recipe.student_config(), seed=SEED, device=DEVICE, **({"epochs": EPOCHS} if EPOCHS else {}))
        '''),
        code(TEACHER_HELPER),
        code(STUDENT_HELPER),
        md("""
        ## The models

        The same teacher and students as notebook 00 (reused when that notebook ran first).
        """),
        code('''
        bundle = load_dataset(DATASET, DATA_ROOT, train_subset=recipe.train_subset, seed=SEED, augment=config.augment)
        info = bundle.info
        teacher = get_teacher(DATASET, recipe).to(device)
        shared = prepare(bundle, teacher, config)
        runs = {method: student_run(method, teacher, bundle, config, shared) for method in ("vanilla", "simkd")}
        simkd, vanilla = runs["simkd"]["distiller"].cpu().eval(), runs["vanilla"]["distiller"].cpu().eval()
        teacher = teacher.cpu().eval()

        test_x, test_y = shared["test_tensors"]
        x, y = test_x[:1000], test_y[:1000]            # at most 1,000 test images for the analysis
        with torch.no_grad():
            teacher_maps = teacher.forward_features(x)
            teacher_logits = teacher.forward_head(teacher_maps)
            logits = {"teacher": teacher_logits, "SimKD student": simkd(x), "vanilla student": vanilla(x)}
        pd.DataFrame({name: {"test top-1 (%)": round(top1(l, y), 2),
                             "agreement with teacher (%)": round(analysis.prediction_agreement(l, teacher_logits), 2)}
                      for name, l in logits.items()}).T
        '''),
        md("""
        ## 1. Pooled features in two dimensions

        Each point is one test image's globally pooled feature vector: the teacher's
        $\\bar{f}_T \\in \\mathbb{R}^{C_t}$, the SimKD student's *projected* $\\overline{P(f_S)} \\in \\mathbb{R}^{C_t}$
        (exactly what the teacher's classifier reads), and the vanilla student's own $\\bar{f}_S \\in \\mathbb{R}^{C_s}$.
        PCA keeps the directions of largest variance (global layout); t-SNE keeps neighbourhoods (clusters).
        """),
        code('''
        features = {
            f"teacher ({teacher.model_name})": analysis.pooled_features(teacher, x),
            "SimKD student (projected)": analysis.simkd_pooled_features(simkd, x),
            f"vanilla student ({recipe.student_model})": analysis.pooled_features(vanilla.student, x),
        }
        subset = np.random.default_rng(SEED).choice(len(y), min(MAX_POINTS, len(y)), replace=False)
        labels = y.numpy()[subset]
        for method in ("pca", "tsne"):
            embedded = {name: analysis.project_2d(f[subset], method, seed=SEED) for name, f in features.items()}
            fig = viz.feature_scatter(embedded, labels, info.class_names,
                                      f"{'PCA' if method == 'pca' else 't-SNE'} of pooled features ({len(subset)} test images)")
            plt.show()
        '''),
        md("""
        ## 2. How close are the features, class by class?

        Cosine similarity $\\cos(\\overline{P(f_S)}, \\bar{f}_T)$ per test image, averaged per class — for the
        trained SimKD student and, as a reference, for the same architecture before training (random encoder
        and projector). A vanilla student lives in a different space (other channels, no projector), so it has
        no counterpart here.
        """),
        code('''
        seed_everything(SEED)
        untrained = create_distiller("simkd", create_model(recipe.student_model, info.num_classes, info.in_channels),
                                     teacher, **recipe.method_options.get("simkd", {})).eval()
        untrained.target_size = simkd.target_size
        features["SimKD untrained (projected)"] = analysis.simkd_pooled_features(untrained, x)
        teacher_pooled = features[f"teacher ({teacher.model_name})"]
        similarity = {
            "SimKD, trained": analysis.per_class_cosine(features["SimKD student (projected)"], teacher_pooled, y,
                                                        info.num_classes),
            "SimKD, untrained": analysis.per_class_cosine(features["SimKD untrained (projected)"], teacher_pooled, y,
                                                          info.num_classes),
        }
        print({name: round(float(np.nanmean(v)), 3) for name, v in similarity.items()}, "(mean over classes)")
        fig = viz.per_class_similarity(similarity, info.class_names)
        plt.show()
        '''),
        md("""
        ## 3. Feature error and agreement, epoch by epoch

        A fresh SimKD student is trained for `TRACK_EPOCHS` epochs, one epoch per `fit` call: `resume=True`
        restores weights, optimiser, scheduler and RNG states from `last.pt`, so this is exactly one
        continuous run, paused after every epoch to measure, on the test images,

        * the SimKD loss $\\frac{1}{NC_tHW}\\sum \\|P(f_S) - f_T\\|^2$ (the *feature MSE*), and
        * the *agreement*: how often the student's prediction equals the teacher's.

        (A constant learning rate with one decay keeps the paused run identical to an unpaused one.)
        """),
        code('''
        track_dir = Path(RUNS) / f"04_tracking_{DATASET}_e{TRACK_EPOCHS}_s{SEED}"
        shutil.rmtree(track_dir, ignore_errors=True)      # measured afresh every time (a few seconds)
        track_config = replace(config, schedule="multistep", milestones=(max(1, (2 * TRACK_EPOCHS) // 3),))
        seed_everything(SEED)
        tracked = create_distiller("simkd", create_model(recipe.student_model, info.num_classes, info.in_channels),
                                   teacher, **recipe.method_options.get("simkd", {}))
        tracked.target_size = simkd.target_size
        records = []
        for epoch in range(TRACK_EPOCHS + 1):
            if epoch > 0:
                fit(tracked, bundle.train, bundle.test, replace(track_config, epochs=epoch), track_dir, resume=True,
                    log=None, progress=False, **shared)
            tracked.cpu()
            measured = analysis.simkd_alignment(tracked, x, teacher_maps)
            records.append({"epoch": epoch, "feature_mse": measured["feature_mse"],
                            "agreement": analysis.prediction_agreement(measured["logits"], teacher_logits),
                            "test_top1": top1(measured["logits"], y)})
        fig = viz.alignment_over_training(records)
        plt.show()
        pd.DataFrame(records).set_index("epoch").round(4).T
        '''),
        md("""
        ## 4. Confusion matrices

        Row $i$, column $j$: the fraction of class-$i$ test images predicted as class $j$ (scikit-learn's
        `confusion_matrix`, row-normalised). A SimKD student that mimics the teacher's features tends to
        inherit the teacher's confusions too, errors included.
        """),
        code('''
        matrices = {name: analysis.confusion(y, l, info.num_classes) for name, l in logits.items()}
        fig = viz.confusion_matrices(matrices, info.class_names)
        plt.show()
        '''),
        md("""
        ## 5. The argument made visible: interpolate toward the teacher's features

        The teacher's classifier $g_T$ is linear, so feeding it
        $h_\\alpha = (1-\\alpha)\\,\\overline{P(f_S)} + \\alpha\\,\\bar{f}_T$ gives logits
        $(1-\\alpha)\\, g_T(\\overline{P(f_S)}) + \\alpha\\, g_T(\\bar{f}_T)$ exactly (the bias enters with weight
        $(1-\\alpha)+\\alpha = 1$).
        At $\\alpha = 0$ this *is* the SimKD student; at $\\alpha = 1$ it *is* the teacher, exactly. The curve in
        between shows how much accuracy the remaining feature gap costs — the gap SimKD's single loss closes.
        """),
        code('''
        alphas = np.linspace(0, 1, 21)
        head = teacher.get_classifier()
        curves = {name: analysis.interpolate_head_accuracy(features[f"{name} (projected)"], teacher_pooled, head, y, alphas)
                  for name in ("SimKD student", "SimKD untrained")}
        teacher_top1 = top1(teacher_logits, y)
        assert abs(curves["SimKD student"][0] - top1(logits["SimKD student"], y)) < 1e-6   # alpha = 0: the student
        assert abs(curves["SimKD student"][-1] - teacher_top1) < 1e-6                      # alpha = 1: the teacher
        print(f"alpha=0: {curves['SimKD student'][0]:.2f}% (the SimKD student)   alpha=1: {curves['SimKD student'][-1]:.2f}% "
              f"(= the teacher's {teacher_top1:.2f}%)   untrained student at alpha=0: {curves['SimKD untrained'][0]:.2f}%")
        norms = {name: round(f.norm(dim=1).mean().item(), 3) for name, f in features.items()}
        print("mean norm of the pooled features (a small vector moves the head's decision little):", norms)
        (Path(RUNS) / f"04_alpha_{DATASET}_{PROFILE}.json").write_text(json.dumps(
            {"alphas": alphas.tolist(), **{k: v.tolist() for k, v in curves.items()}, "teacher_top1": teacher_top1}, indent=2))
        fig = viz.alpha_interpolation(alphas, curves, teacher_top1)
        plt.show()
        '''),
        md("""
        ## 6. Feature explorer

        Pick the feature source, the classes and the projection. (Live in Jupyter; in a headless run the next
        cell calls the same function directly.)
        """),
        code('''
        explorer_features = {name: f[subset] for name, f in features.items()}
        widgets.feature_explorer(explorer_features, labels, info.class_names, max_points=MAX_POINTS, seed=SEED)
        '''),
        code('''
        fig = widgets.explore_features(explorer_features, labels, info.class_names, method="SimKD student (projected)",
                                       classes=[0, 1, 2, 3], projection="tsne", max_points=MAX_POINTS, seed=SEED)
        plt.show()
        '''),
        md("""
        ## Conclusion

        SimKD trains the student's *projected* features to coincide with the teacher's; the measurements above
        show how far that has come for this run — cosine similarity per class against an untrained baseline,
        2-D maps side by side, and the feature MSE falling while the agreement with the teacher's predictions
        rises. The interpolation makes the paper's argument concrete: the head is the teacher's, so the
        remaining accuracy gap is a feature gap, and at $\\alpha=1$ the accuracy is exactly the teacher's.

        **Try next**
        * `DATASET = "fashion_mnist"`: harder classes (shirt vs. T-shirt); compare their per-class similarities.
        * Increase `TRACK_EPOCHS`: does agreement keep rising once the test accuracy has plateaued?
        * In the explorer, compare t-SNE and PCA for the two or three most confused classes.
        """),
    ]


# ---------------------------------------------------------------------------------------------- 05
def assignment():
    return [
        md("""
        # 05 · Assignment: implement SimKD

        You will write SimKD's three moving parts and check each one against the reference in
        `simkd_lite.distillers`:

        1. the **spatial alignment** of the two feature maps,
        2. the **projector** (with the official parameter names, so official checkpoints load),
        3. the **SimKD loss**.

        Then your parts train a student end to end. Each checker prints `PASS` or `FAIL` with the reason
        (wrong shape, wrong parameter count, values that differ from the reference, not implemented yet).

        **Getting the student version.** This file contains reference solutions between
        `### BEGIN SOLUTION` and `### END SOLUTION`. The command

        ```bash
        python -m simkd_lite.assignment make-student notebooks/05_assignment.ipynb 05_assignment_student.ipynb
        ```

        writes a copy in which each solution is replaced by `raise NotImplementedError`; its checkers then
        report "not implemented yet" until you fill the gaps.
        """),
        md("## Parameters\n" + PROFILES_NOTE + """
        Only part 4 trains anything: `EPOCHS` epochs of your SimKD on `DATASET` (default 5 on digits).
        """ + THREADS_NOTE),
        params('''
        import os

        DATASET = "digits"
        PROFILE = os.environ.get("SIMKD_PROFILE", "quick")
        EPOCHS = 5                # part 4: epochs of your own SimKD training loop
        DEVICE = None
        SEED = 0
        DATA_ROOT = "../data"
        RUNS = "../runs/notebooks"
        TEACHER_CHECKPOINT = None
        CPU_THREADS = 1
        '''),
        code('''
        import torch
        import torch.nn.functional as F
        from threadpoolctl import threadpool_limits
        from torch import nn

        from simkd_lite.assignment import check_alignment, check_loss, check_projector

        torch.manual_seed(SEED)
        if CPU_THREADS:  # PyTorch's threads, and the BLAS/OpenMP pools of NumPy and scikit-learn (t-SNE)
            torch.set_num_threads(CPU_THREADS)
            threadpool_limits(CPU_THREADS)
        '''),
        md("""
        ## Part 1 · Spatial alignment

        The student's last map $f_S \\in \\mathbb{R}^{N \\times C_s \\times H_s \\times H_s}$ and the teacher's
        $f_T \\in \\mathbb{R}^{N \\times C_t \\times H_t \\times H_t}$ may differ in size (VGG-8 ends at 4×4, ResNet-32x4 at 8×8).
        SimKD pools the **larger** map down to the smaller size with adaptive average pooling,

        $$\\operatorname{align}(f_S, f_T) = \\begin{cases}
        (\\operatorname{AAP}_{H_t}(f_S),\\ f_T) & H_s > H_t\\\\
        (f_S,\\ \\operatorname{AAP}_{H_s}(f_T)) & H_t > H_s\\\\
        (f_S,\\ f_T) & \\text{otherwise}\\end{cases}$$

        and never changes the channels (that is the projector's job). Hint: `F.adaptive_avg_pool2d(x, size)`.
        """),
        code('''
        def align_feature_maps(feat_s, feat_t):
            """(N, C_s, H_s, H_s), (N, C_t, H_t, H_t) -> (student map, teacher map) with equal H and W."""
            ### BEGIN SOLUTION
            size_s, size_t = feat_s.shape[-1], feat_t.shape[-1]
            if size_s > size_t:
                feat_s = F.adaptive_avg_pool2d(feat_s, size_t)
            elif size_t > size_s:
                feat_t = F.adaptive_avg_pool2d(feat_t, size_s)
            return feat_s, feat_t
            ### END SOLUTION
        '''),
        code('''
        check_alignment(align_feature_maps)
        '''),
        md("""
        ## Part 2 · The projector

        `Projector(student_channels, teacher_channels, factor)` holds one `nn.Sequential` called `transfer`
        with, in this order, $m = $ `teacher_channels // factor`:

        conv1×1($s \\to m$, no bias) → BN($m$) → ReLU → conv3×3($m \\to m$, padding 1, no bias) → BN($m$) → ReLU →
        conv1×1($m \\to t$, no bias) → BN($t$) → ReLU

        so that its parameters are named `transfer.0.weight`, `transfer.1.weight`, ... like the official code's,
        and it has $s m + 9m^2 + m t + 4m + 2t$ parameters. `forward(x)` returns `self.transfer(x)`.
        """),
        code('''
        class Projector(nn.Module):
            def __init__(self, student_channels, teacher_channels, factor=2):
                super().__init__()
                ### BEGIN SOLUTION
                m = teacher_channels // factor
                self.transfer = nn.Sequential(
                    nn.Conv2d(student_channels, m, kernel_size=1, bias=False), nn.BatchNorm2d(m), nn.ReLU(inplace=True),
                    nn.Conv2d(m, m, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(m), nn.ReLU(inplace=True),
                    nn.Conv2d(m, teacher_channels, kernel_size=1, bias=False), nn.BatchNorm2d(teacher_channels),
                    nn.ReLU(inplace=True),
                )
                ### END SOLUTION

            def forward(self, x):
                ### BEGIN SOLUTION
                return self.transfer(x)
                ### END SOLUTION
        '''),
        code('''
        check_projector(Projector)
        '''),
        md("""
        ## Part 3 · The loss

        SimKD's whole objective is the mean squared error over **every element** of the projected student map
        and the (aligned) teacher map:

        $$\\mathcal{L} = \\frac{1}{N\\,C_t\\,H\\,W} \\sum_{n,c,h,w} \\big(P(f_S)_{nchw} - f_{T,nchw}\\big)^2 .$$

        Not a sum, not a per-sample mean, not its square root; and it must stay differentiable.
        """),
        code('''
        def simkd_loss(projected_s, target_t):
            """Scalar MSE between the projected student map and the teacher map (same shape)."""
            ### BEGIN SOLUTION
            return ((projected_s - target_t) ** 2).mean()
            ### END SOLUTION
        '''),
        code('''
        check_loss(simkd_loss)
        '''),
        md("""
        ## Part 4 · Your SimKD, end to end

        When the three checks pass, this part (a) compares one forward pass of your parts with the library's
        `SimKD` module on real digits features — same weights, same loss and logits — and (b) trains a student
        with your parts for `EPOCHS` epochs: the teacher's feature maps are cached once, the student encoder and
        your projector are optimised, and predictions go through the teacher's frozen classifier.
        """),
        code('''
        from dataclasses import replace
        from pathlib import Path

        from simkd_lite import SimKD, create_model
        from simkd_lite.assignment import check_alignment, check_loss, check_projector
        from simkd_lite.checkpoints import load_model
        from simkd_lite.data import load_dataset
        from simkd_lite.distillers import FrozenTeacher
        from simkd_lite.distillers.losses import global_pool
        from simkd_lite.engine.jobs import load_teacher, train_teacher
        from simkd_lite.engine.pretrained import shipped_teacher
        from simkd_lite.engine.profiles import get_profile
        from simkd_lite.engine.trainer import cache_teacher_outputs, materialize, top1

        ready = all([check_alignment(align_feature_maps), check_projector(Projector), check_loss(simkd_loss)])
        if not ready:
            print("Part 4 needs parts 1-3: fix the FAIL lines above first.")
        '''),
        code('''
        if ready:
            recipe = get_profile(PROFILE, DATASET)
            if TEACHER_CHECKPOINT or shipped_teacher(DATASET):
                teacher = load_teacher(TEACHER_CHECKPOINT, DATASET)[0]
            else:  # the series' digits teacher: trained once, then reused
                out = Path(RUNS) / f"teacher_{DATASET}_{recipe.teacher_model}_e{recipe.teacher.epochs}_s{SEED}"
                train_teacher(DATASET, recipe.teacher_model, replace(recipe.teacher, seed=SEED), out, data_root=DATA_ROOT,
                              resume=True, log=lambda message: None, progress=False)
                teacher = load_model(out / "last.pt")[0]
            frozen = FrozenTeacher(teacher)
            head = frozen.classifier_copy()
            bundle = load_dataset(DATASET, DATA_ROOT, train_subset=recipe.train_subset, seed=SEED, augment=False)
            train_x, train_y = materialize(bundle.train)
            test_x, test_y = materialize(bundle.test)
            cpu = torch.device("cpu")
            train_t, test_t = cache_teacher_outputs(frozen, train_x, cpu), cache_teacher_outputs(frozen, test_x, cpu)

            # (a) one forward pass, yours vs. the library's, with identical weights
            torch.manual_seed(SEED)
            student = create_model(recipe.student_model, bundle.info.num_classes, bundle.info.in_channels)
            projector = Projector(student.feature_channels, teacher.feature_channels, 2)
            reference = SimKD(student.feature_channels, teacher.feature_channels, 2)
            reference.load_state_dict(projector.state_dict())
            feat_s, feat_t = student.forward_features(train_x[:64]), train_t.features[:64]
            s_map, t_map = align_feature_maps(feat_s, feat_t)
            yours = simkd_loss(projector(s_map), t_map)
            ref_proj, ref_target, ref_logits = reference(feat_s, feat_t, head)
            print(f"loss: yours {yours.item():.6f} | library {SimKD.loss(ref_proj, ref_target).item():.6f}")
            assert torch.allclose(yours, SimKD.loss(ref_proj, ref_target), atol=1e-6)
            assert torch.allclose(head(global_pool(projector(s_map))), ref_logits, atol=1e-5)
        '''),
        code('''
        if ready:
            def evaluate():
                student.eval(), projector.eval()
                with torch.no_grad():
                    s_map, _ = align_feature_maps(student.forward_features(test_x), test_t.features)
                    accuracy = top1(head(global_pool(projector(s_map))), test_y)
                student.train(), projector.train()
                return accuracy

            params = [p for p in list(student.parameters()) + list(projector.parameters()) if p.requires_grad]
            optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
            generator = torch.Generator().manual_seed(SEED)
            for epoch in range(1, EPOCHS + 1):
                total = 0.0
                for idx in torch.randperm(len(train_y), generator=generator).split(64):
                    s_map, t_map = align_feature_maps(student.forward_features(train_x[idx]), train_t.features[idx])
                    loss = simkd_loss(projector(s_map), t_map)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(idx)
                print(f"epoch {epoch}: SimKD loss {total / len(train_y):.4f}, test top-1 through the teacher head "
                      f"{evaluate():.2f}%")
            print(f"teacher: {top1(test_t.logits, test_y):.2f}%")
        '''),
        md("""
        ## Conclusion

        SimKD is three small pieces: pool the larger map, project the student's channels onto the teacher's
        with a bottleneck, and minimise one MSE; the teacher's classifier does the rest. If your parts passed
        the checkers, they are numerically the library's, and they train a working student.

        **Try next**
        * Break something on purpose (a `bias=True`, a `.sum()` in the loss, max pooling) and read the checker's
          message.
        * Add a cross-entropy term to your loop (through the teacher head): does it help? (The paper uses none.)
        * Implement the deployment step: wrap encoder, projector and head in one `nn.Module` and compare it with
          `SimKDDistiller.export()`.
        """),
    ]


BUILDERS = {
    "00_quickstart.ipynb": quickstart,
    "01_teacher_training.ipynb": teacher_training,
    "02_projector_design.ipynb": projector_design,
    "03_gpu_distillation.ipynb": gpu_distillation,
    "04_feature_space.ipynb": feature_space,
    "05_assignment.ipynb": assignment,
}


def build(name: str) -> nbformat.NotebookNode:
    notebook = new_notebook(cells=BUILDERS[name]())
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for index, cell in enumerate(notebook.cells):  # stable ids: regenerating gives identical files
        cell["id"] = f"{Path(name).stem[:2]}-{index:02d}"
    nbformat.validate(notebook)
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    parser.add_argument("--out", type=Path, default=NOTEBOOKS, help="folder to write into (default notebooks/)")
    args = parser.parse_args(argv)
    stale = []
    for name in BUILDERS:
        text = nbformat.writes(build(name)) + "\n"
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print("wrote", path)
    if stale:
        print("out of date (run scripts/build_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
