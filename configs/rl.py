"""Online KL-regularised RL: a policy optimised against a reward under a KL constraint.

    python -m rewardjax.main --config=configs/rl.py:grpo --workdir=runs/grpo
    python -m rewardjax.main --config=configs/rl.py:ppo,smoke --workdir=/tmp/ppo
    python -m rewardjax.main --config=configs/rl.py:rloo --workdir=runs/rloo \\
        --config.init_from=runs/sft --config.reward.kind=model --config.reward.model_workdir=runs/rm
    python -m rewardjax.main --config=configs/rl.py:grpo --workdir=runs/rlvr \\
        --config.data.source=files --config.data.layout=sft --config.data.train_path=math.jsonl \\
        --config.model.vocab_size=256 --config.rl.max_new_tokens=64 --config.reward.kind=verifiable

Each iteration samples `rl.num_samples` completions of `train.batch_size` prompts, scores them with
`reward` (the synthetic task's gold reward by default; `kind=model` a reward-model run's proxy,
`ensemble=worst_case|uncertainty|...` for an ensemble head; `kind=rule` a regex on decoded text;
`kind=verifiable` RLVR: the completion's answer checked against its prompt's response in the data
files, `verifier=math|exact_match|choice|format`; `kind=rubric` a JSONL file of rubrics;
`kind=bigram` a bigram reward table; `kind=combined` "[name=]kind[@source][:weight],..." through
`transform`, optionally constrained: `reward.constraints.thresholds` (θ_k per component) turns the
weights into Lagrange multipliers learned by dual ascent), and updates the policy (see
`rewardjax.train.tasks.rl`). The policy starts from `init_from` (an SFT run, or a reward-model
run's backbone) and the reference is that initial policy. That run must have this config's
`model` shape: on the synthetic task `model.vocab_size` is the task's vocabulary + 1 (9), where
configs/sft.py and configs/reward_model.py keep the preset's 256, so train them with
`--config.model.vocab_size=9`.

Arg (`rewardjax.train.defaults.parse_arg`): one algorithm and `smoke`:
- `ppo`: GAE with a critic, PPO clip, k1 KL in the reward with an adaptive coefficient
  (Schulman et al. arXiv 1707.06347; Ziegler et al. arXiv 1909.08593);
- `grpo`: group-normalised advantages, k3 KL in the loss, per-sequence token means (Shao et al.
  arXiv 2402.03300);
- `dr_grpo`: unscaled group advantages, constant-length aggregation, no KL (Liu et al. arXiv
  2503.20783);
- `dapo`: clip-higher, dynamic sampling (groups with equal rewards dropped), token-mean, soft
  overlong penalty, no KL (Yu et al. arXiv 2503.14476);
- `gspo`: GRPO advantages with the sequence-level ratio and its small clip range (Zheng et al.
  arXiv 2507.18071);
- `rloo`: leave-one-out baseline, k1 KL in the reward (Ahmadian et al. arXiv 2402.14740);
- `reinforce_pp`: per-token KL rewards, batch-whitened discounted returns (Hu arXiv 2501.03262);
- `remax`: the greedy completion's reward as baseline (Li et al. arXiv 2310.10505).
"""

import ml_collections

from rewardjax.train import defaults

ALGORITHMS = ("ppo", "grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp", "remax")


def _rl_section() -> ml_collections.ConfigDict:
    r = ml_collections.ConfigDict()
    r.num_samples = 8  # N completions per prompt (train.batch_size prompts per iteration)
    r.log_samples = 4  # completions written to samples.jsonl every train.log_every iterations
    r.max_new_tokens = 0  # 0: the synthetic task's response length
    r.temperature = 1.0
    r.top_k = 0
    r.top_p = 1.0
    r.stop_tokens = ()
    r.advantage = "grpo"  # a key of rewardjax.rl.advantages
    r.advantage_kwargs = ml_collections.ConfigDict()
    r.policy_loss = "ppo_clip"  # a key of rewardjax.rl.policy_losses
    r.policy_loss_kwargs = ml_collections.ConfigDict({"epsilon_low": 0.2})
    r.aggregation = "token_mean"  # rewardjax.rl.aggregation.MODES
    r.num_epochs = 1
    r.num_minibatches = 1
    r.value_coef = 0.5  # PPO's critic (advantage=gae)
    r.value_clip = 0.2
    r.kl = ml_collections.ConfigDict()
    r.kl.placement = "in_reward"  # or "in_loss"
    r.kl.estimator = "k1"  # in the loss: k2, k3 or k3+
    r.kl.beta = 0.05
    r.kl.controller = "fixed"  # "adaptive" (Ziegler et al.) or "lagrangian" (dual ascent)
    r.kl.target = 1.0  # adaptive / lagrangian: the target KL per sequence
    r.kl.horizon = 10000.0  # adaptive: samples
    r.kl.lr = 0.01  # lagrangian: dual step size
    r.filter_groups = False  # DAPO dynamic sampling: groups with reward std <= filter_tol dropped
    r.filter_tol = 1e-6
    r.overlong = "none"  # "mask" truncated completions, or DAPO's soft "penalty" (in tokens)
    r.overlong_cache = 2  # penalty: tokens before max_new_tokens where it starts
    r.overlong_coef = 1.0
    return r


def _reward_section() -> ml_collections.ConfigDict:
    w = ml_collections.ConfigDict()
    w.kind = "gold"  # "gold" (synthetic task), "model", "rule", "verifiable", "rubric", "combined"
    w.model_workdir = ""  # kind=model: a reward-model run
    w.ensemble = "mean"  # rewardjax.rewards.ENSEMBLE_REDUCTIONS
    w.uncertainty_coef = 1.0
    w.pattern = ""  # kind=rule: a regex the decoded completion must contain (reward 1, else 0)
    # kind=verifiable: the completion's answer against its prompt's response in the data files:
    # "math" (numeric / boxed equivalence), "exact_match" (normalised), "choice" (A-D), "format"
    # (<think>...</think><answer>...</answer>, no answer needed).
    w.verifier = "math"
    w.extract = "boxed"  # the completion's answer: "boxed", "answer_tag" or "none" (all of it)
    w.rubrics_path = ""  # kind=rubric: a JSONL file of rubrics (rewardjax.rewards.load_rubrics)
    w.hard_gate = True  # kind=rubric: a failed hard item gives the minimum reward
    w.bigram_path = ""  # kind=bigram: a .npy [V, V] bigram reward table (the synthetic task)
    # kind=combined: "[name=]kind[@source][:weight],..." (source: that component's model run or
    # bigram table; name: its name in the metrics, needed when two components share a kind).
    w.components = "model:1.0"
    w.transform = ""  # kind=combined: rewardjax.rewards.TRANSFORMS ("" = none)
    # kind=combined, constrained (Moskovitz et al. 2023, arXiv 2310.04373): one Lagrange
    # multiplier λ_k per component, the reward Σ_k (w_k ∓ λ_k) r_k, and after each iteration's
    # scoring one projected dual-ascent step λ_k <- max(0, λ_k + lr (mean r_k - θ_k))
    # (rewardjax.rl.constraints); logged as constraint/<name>/lambda and .../mean.
    w.constraints = ml_collections.ConfigDict()
    w.constraints.thresholds = ()  # θ_k, one per component in order; () = no constraints
    w.constraints.sense = "at_most"  # "at_most" | "at_least" | "equal", one or one per component
    w.constraints.lr = 0.05  # the dual step size
    w.constraints.init = 0.0  # the initial multipliers λ_k
    return w


def get_config(arg=None):
    options, _ = defaults.parse_arg(
        arg,
        options={*ALGORITHMS, "smoke"},
        exclusive=[set(ALGORITHMS)],
        config_file="configs/rl.py",
    )
    c = defaults.base_config("rl")
    c.model.vocab_size = c.data.synthetic.vocab_size + 1  # the task's ids (0 pads)
    c.optimizer.learning_rate = 1e-4
    c.optimizer.warmup_steps = 0
    c.optimizer.schedule = "constant"
    c.train.num_steps = 200
    c.train.batch_size = 16  # prompts per iteration
    c.train.checkpoint_every = 50
    c.eval.enabled = False
    c.rl = _rl_section()
    c.reward = _reward_section()
    r = c.rl
    algorithm = next((o for o in options if o in ALGORITHMS), "grpo")
    if algorithm == "ppo":
        r.advantage, r.num_samples = "gae", 4
        r.advantage_kwargs = ml_collections.ConfigDict({"gamma": 1.0, "lam": 0.95})
        r.num_epochs, r.num_minibatches = 2, 2
        r.kl.controller = "adaptive"
    elif algorithm in ("grpo", "gspo"):
        r.kl.placement, r.kl.estimator, r.kl.beta = "in_loss", "k3", 0.04
        r.aggregation = "seq_mean_token_mean"
        if algorithm == "gspo":
            r.policy_loss = "gspo"
            r.policy_loss_kwargs = ml_collections.ConfigDict(
                {"epsilon_low": 3e-4, "epsilon_high": 4e-4}
            )
    elif algorithm == "dr_grpo":
        r.advantage_kwargs = ml_collections.ConfigDict({"scale": "none"})
        r.aggregation, r.kl.beta = "seq_mean_token_sum_norm", 0.0
    elif algorithm == "dapo":
        r.policy_loss_kwargs = ml_collections.ConfigDict({"epsilon_low": 0.2, "epsilon_high": 0.28})
        r.filter_groups, r.overlong, r.kl.beta = True, "penalty", 0.0
    elif algorithm in ("rloo", "reinforce_pp", "remax"):
        r.advantage = algorithm
    if "smoke" in options:
        defaults.smoke_overrides(c)
        c.train.batch_size = 2
        r.num_samples = 4
        c.train.num_steps = 4
        c.train.checkpoint_every = 2
        c.optimizer.warmup_steps = 0
    return c
