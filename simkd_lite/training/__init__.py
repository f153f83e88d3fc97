"""The training library: ONE loop for teachers, every method, one student or several, and what makes it fast and safe.

    loop.py          TrainConfig, fit (one or several students: the loop, end of epoch, checkpoints, resume),
                     predict / top1
    step.py          the one step body (StepMember: forward -> loss -> NaN check -> backward -> optimizer step)
    graphed.py       the step object fit always steps through (SharedStep): eager, or replayed from a CUDA graph
    stacked.py       several students of one architecture as one batched network (the step's stacked path)
    batches.py       the batch stream: tensors (+ cached teacher outputs), a DataLoader, or on-device batches
    run_folder.py    a run folder belongs to one run: lock, refuse / resume / overwrite, checked resume
    device_data.py   uint8 data on the device, crop + flip + normalise in whole batches
    teacher_prep.py  the frozen teacher made fast: BatchNorm folding, channels_last, torch.compile
    metrics.py       last / best, metrics.csv, TensorBoard
    runtime.py       device choice, seeding, the RNG state a resume restores
    distributed.py   torchrun / DistributedDataParallel helpers

Nothing here knows a method by name: methods describe themselves through the `Distiller` hooks.
"""
