"""A pairwise judge trained on verdict tokens: the synthetic task's preference pairs shown as
`[prompt, sep, response A, sep, response B, sep]` and labelled with the verdict id "A" or "B"
(both presentation orders; `rewardjax.judges.pairs_to_judge_dataset`), trained by the SFT trainer
(cross-entropy of the verdict) or, with `dpo`, by DPO (correct vs wrong verdict).

    python -m rewardjax.main --config=configs/judge.py --workdir=runs/judge
    python -m rewardjax.main --config=configs/judge.py:smoke --workdir=/tmp/judge
    python -m rewardjax.main --config=configs/judge.py:dpo,smoke --workdir=/tmp/judge_dpo

The model's vocabulary is the task's ids plus three (separator, "A", "B": `judges.JudgeIds`);
score held-out pairs with `judges.PairwiseJudge(model, params, judges.TokenTemplate(ids.sep),
verdicts=(ids.a, ids.b))`, which averages both orders.

On the default world (seed 0), 200 SFT steps of 32 rows (`--config.train.num_steps=200
--config.train.batch_size=32 --config.data.synthetic.num_train_pairs=1024`) give a judge that ranks
held-out pairs at 0.945 (both orders averaged; seeds 0-3: 0.83-0.955). DPO is better started from
that SFT judge (50 steps at lr 1e-3: 0.94): from random weights its per-order verdicts are
dominated by the position (100 steps: the eval's implicit-reward accuracy 0.50, order-averaged
accuracy 0.80).

Arg (`rewardjax.train.defaults.parse_arg`): `smoke` (a few-second run), `dpo` (DPO on the verdict
tokens instead of SFT, e.g. `--config=configs/judge.py:dpo,smoke`; start from an SFT judge with
`--config.init_from=runs/judge`).
"""

import ml_collections

from rewardjax.judges import JudgeIds
from rewardjax.train import defaults


def get_config(arg=None):
    options, _ = defaults.parse_arg(arg, options={"smoke", "dpo"}, config_file="configs/judge.py")
    c = defaults.base_config("dpo" if "dpo" in options else "sft")
    c.optimizer.learning_rate = 3e-3
    if "dpo" in options:
        c.loss = ml_collections.ConfigDict()
        c.loss.name = "dpo"
        c.loss.beta = 0.1
        c.loss.kwargs = ml_collections.ConfigDict()
        c.loss.loss_weight = 1.0
        c.loss.nll_weight = 0.0
        c.reference = "initial"
    s = c.data.synthetic
    # Per-token gold rewards and sharper labels: a comparison a small judge learns quickly.
    s.reward = "token"
    s.length = 6
    s.beta = 3.0
    c.data.judge = ml_collections.ConfigDict()
    c.data.judge.enabled = True
    c.data.judge.both_orders = True
    # Task ids (vocab + 1 for the pad id) and the judge's separator and verdicts.
    c.model.vocab_size = s.vocab_size + 1 + JudgeIds.extra
    if "smoke" in options:
        defaults.smoke_overrides(c)
    return c
