"""Quickstart: the first stage of the overoptimization lab, on CPU in a few minutes.

    python -m rewardjax.main --config=configs/quickstart.py --workdir=runs/quickstart

On the synthetic gold-reward task (an exact Markov-chain base model with a known bigram gold
reward, pairs labelled by Bradley–Terry on it), trains a proxy reward model (tiny backbone +
scalar head), evaluates it on held-out pairs (pair accuracy, calibration, agreement with the gold
reward), runs best-of-n under the proxy and under the gold reward, and writes `report.md` with
plots into the work directory.

Arg (`rewardjax.train.defaults.parse_arg`): comma-separated; `smoke` (a few-second run) and
`vocab=<int>`: the synthetic task's vocabulary (default 8; the model's vocabulary follows, one
larger for padding), e.g. `--config=configs/quickstart.py:vocab=16`.
"""

from rewardjax.train import defaults


def get_config(arg=None):
    options, values = defaults.parse_arg(
        arg, options={"smoke"}, values={"vocab": int}, config_file="configs/quickstart.py"
    )
    c = defaults.reward_model_config()
    s = c.data.synthetic
    s.vocab_size = values.get("vocab", 8)
    s.length = 8
    s.prompt_length = 4
    s.num_train_pairs = 8192
    s.num_eval_pairs = 1024
    c.model.vocab_size = s.vocab_size + 1  # token ids are vocabulary tokens + 1 (0 pads)
    c.train.num_steps = 800
    c.train.batch_size = 64
    c.train.log_every = 20
    c.train.eval_every = 200
    c.train.checkpoint_every = 400
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 50
    c.eval.batch_size = 512
    c.report.enabled = True
    c.report.bon_prompts = 32
    c.report.bon_samples = 64
    if "smoke" in options:
        defaults.smoke_overrides(c)
        c.train.eval_every = 0
        c.report.bon_prompts = 4
        c.report.bon_samples = 8
    return c
