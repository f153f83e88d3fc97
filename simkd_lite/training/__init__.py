"""The training library: one loop for teachers and every method, and what makes it fast and safe.

    loop.py          TrainConfig, fit (the loop, checkpoints, resume), predict / top1
    run_folder.py    a run folder belongs to one run: lock, refuse / resume / overwrite, checked resume
    step.py          one optimisation step (distill_step), bf16 autocast on CUDA
    device_data.py   uint8 data on the device, crop + flip + normalise in whole batches
    teacher_prep.py  the frozen teacher made fast: BatchNorm folding, channels_last, torch.compile
    graphed.py       the whole step replayed from a CUDA graph (CUDA only; eager elsewhere)
    together.py      several students on the same batches, one teacher pass per batch
    runtime.py       device choice, seeding, the RNG state a resume restores
    distributed.py   torchrun / DistributedDataParallel helpers

Nothing here knows a method by name: methods describe themselves through the `Distiller` hooks.
"""
