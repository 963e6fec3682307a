"""Quickstart: the first stage of the overoptimization lab, on CPU in a few minutes.

    python -m rewardjax.main --config=configs/quickstart.py --workdir=runs/quickstart

On the synthetic gold-reward task (an exact Markov-chain base model with a known bigram gold
reward, pairs labelled by Bradley–Terry on it), trains a proxy reward model (tiny backbone +
scalar head), evaluates it on held-out pairs (pair accuracy, calibration, agreement with the gold
reward), runs best-of-n under the proxy and under the gold reward, and writes `report.md` with
plots into the work directory.

The default task is tuned to show reward hacking (Gao et al. 2022, arXiv 2210.10760): responses
of 4 tokens over 8 (8^4 = 4096 responses, all enumerated, so best-of-n is the exact law for n up
to 2^20 with its exact KL) and a proxy trained on few noisy pairs. Its gold reward under
best-of-n rises, peaks and falls while the proxy reward keeps rising; the report draws it with
Gao et al.'s fit and the exact KL-regularised optimum's frontier on one plot.

Arg (`rewardjax.train.defaults.parse_arg`): comma-separated; `smoke` (a few-second run) and
`vocab=<int>`: the synthetic task's vocabulary (default 8; the model's vocabulary follows, one
larger for padding), e.g. `--config=configs/quickstart.py:vocab=16`. The report enumerates all
vocab^4 responses per prompt (at most 2^16: vocab 16 scores 16x more than vocab 8; above 16 set
`--config.report.bon_exact=False` for sampled best-of-n).
"""

from rewardjax.train import defaults

NUM_TRAIN_PAIRS = 512
FLIP_RATE = 0.2


def get_config(arg=None):
    options, values = defaults.parse_arg(
        arg, options={"smoke"}, values={"vocab": int}, config_file="configs/quickstart.py"
    )
    c = defaults.reward_model_config()
    s = c.data.synthetic
    s.vocab_size = values.get("vocab", 8)
    s.length = 4  # response tokens: V^4 responses are enumerated for the exact best-of-n law
    s.prompt_length = 4
    s.num_train_pairs = NUM_TRAIN_PAIRS  # few, noisy pairs: a proxy that can be hacked
    s.flip_rate = FLIP_RATE
    s.num_eval_pairs = 1024
    c.model.vocab_size = s.vocab_size + 1  # token ids are vocabulary tokens + 1 (0 pads)
    c.train.num_steps = 400
    c.train.batch_size = 64
    c.train.log_every = 20
    c.train.eval_every = 200
    c.train.checkpoint_every = 400
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 50
    c.eval.batch_size = 512
    c.report.enabled = True
    c.report.bon_prompts = 32
    c.report.bon_samples = 64  # (sampled best-of-n; unused with bon_exact)
    c.report.bon_exact = True  # exact law over the enumerated responses, n = 1, 2, 4, ...
    c.report.bon_max_n = 2**20
    if "smoke" in options:
        defaults.smoke_overrides(c)
        c.train.eval_every = 0
        c.report.bon_prompts = 4
        c.report.bon_samples = 8
        c.report.bon_max_n = 2**10
    return c
