"""Training: train state, pure steps, the loop, checkpoints, metric writers and experiments.

`run(config, workdir)` runs the experiment a config describes (`config.task` in `TASKS`).
"""
