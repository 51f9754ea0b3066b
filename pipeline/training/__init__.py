"""Training the student (the distill stage's library): SFT examples in the student's chat
format (`sft_data`), the loop (`trainer`), KD losses (`kd`), the teacher's cached top-k
(`topk_cache`), pickle-free checkpoints (`checkpoint`), and one process under a launcher
(`distill_job`).

Example:
    >>> from pipeline.training.trainer import steps_per_epoch
    >>> steps_per_epoch(n_examples=20, batch_size=8, world=1)
    3
"""
