"""The RL trainer (task "rl", configs/rl.py) end to end.

- every algorithm's `configs/rl.py:<algo>,smoke` trains: finite metrics, moved parameters, the
  metrics it promises, and what the algorithm specifically does (no KL for Dr. GRPO and DAPO,
  PPO's adaptive coefficient follows its update rule, the ratio is 1 on-policy);
- a run stopped at step 2 and resumed equals the uninterrupted run bitwise;
- the sampler's log-probs equal the trainer's recomputation (temperature, top-k, top-p);
- an 8-device (data=2 x fsdp=4) run equals the one-device run;
- config errors name the field and the fix;
- a learned reward (reward.kind=model) and policies initialised from a reward-model run (its
  backbone) and from an SFT run;
- constrained rewards (reward.constraints): the multipliers follow projected dual ascent computed
  here in NumPy from the logged component means, and a resumed constrained run equals the
  uninterrupted one.

Runs are compile-bound, so the training runs (each `rewardjax.train.run(config, workdir)`, in
process) and the sampler/trainer rollouts share one worker subprocess (this file run as a script)
with cheap XLA compiler flags and a persistent compilation cache: each algorithm compiles its own
update, everything else (data, sampler, rewards) is compiled once. The 8-device run goes through
`python -m rewardjax.main --cpu_devices=8` beside it. One module-scoped fixture starts both and
every test reads their work directories (a failed run fails only the tests that read it).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
ALGORITHMS = ("ppo", "grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp", "remax")
TIMEOUT = 900  # seconds for the worker; a hang fails the tests instead of blocking CI
# The GRPO runs take 8 prompts: the 8-device run splits them over data=2 x fsdp=4, and the
# resumed and reward-model runs reuse the grpo run's compiled update.
GRPO = {"train.batch_size": 8}
# ReMax samples at temperature 0.9 from the top-6 tokens' nucleus of mass 0.95 and stops at token
# 8: completions end early and their padding lies outside the truncated support.
TRUNCATED = {"rl.temperature": 0.9, "rl.top_k": 6, "rl.top_p": 0.95, "rl.stop_tokens": (8,)}
NUM_STEPS = 4  # the smoke variant's; checkpoints at 2 and 4
# The constrained run: gold at least 0.5, the bigram proxy "p" at most -0.5 (its mean on the
# smoke run is near 0 and above it, so its multiplier grows), from λ = 0.1.
CONSTRAINED = {
    "reward.constraints.thresholds": (0.5, -0.5),
    "reward.constraints.sense": "at_least,at_most",
    "reward.constraints.lr": 0.5,
    "reward.constraints.init": 0.1,
}
LR = 1e-4  # configs/rl.py's learning rate (constant, no warm-up)


def _config(spec: str, overrides: dict | None = None):
    """`configs/<file>.py:<arg>`'s config with dotted overrides, as `--config.a.b=v` would set."""
    name, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    for key, value in (overrides or {}).items():
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[leaf] = tuple(value) if isinstance(value, list) else value  # JSON has no tuples
    return config


def _work(runs_file: str) -> None:
    """The worker: `train.run` each `{"name", "config", "overrides", "workdir"}` in order (config
    "rollouts": save `_rollout`'s arrays for each of `SAMPLING`), and write `{name: {"ok": ...,
    "error": ..., "seconds": ...}}` next to the runs file (a failure does not stop the runs after
    it; the test that reads it reports the traceback)."""
    from rewardjax import train

    with open(runs_file) as f:
        runs = json.load(f)
    results = {}
    for r in runs:
        start = time.perf_counter()
        try:
            if r["config"] == "rollouts":  # the sampler/trainer arrays, not a training run
                os.makedirs(r["workdir"], exist_ok=True)
                for i, setting in enumerate(SAMPLING):
                    np.savez(os.path.join(r["workdir"], f"{i}.npz"), **_rollout(*setting))
                results[r["name"]] = {"ok": True}
            else:
                summary = train.run(_config(r["config"], r["overrides"]), r["workdir"])
                results[r["name"]] = {"ok": True, "step": summary["step"]}
        except Exception as e:  # reported by the test that reads it
            results[r["name"]] = {
                "ok": False,
                "type": type(e).__name__,
                "error": str(e),
                "traceback": traceback.format_exc(),
            }
        results[r["name"]]["seconds"] = time.perf_counter() - start
        with open(runs_file + ".results", "w") as f:
            json.dump(results, f)


LOWER = "abcdefghijklmnopqrstuvwxyz"
# A hard gate (one letter, weight 1), then soft items of weight 2 (lowercase) and 1 (no digit).
RUBRIC = [
    {"text": "one letter", "kind": "hard", "verifier": {"type": "regex", "pattern": "^[A-Za-z]$"}},
    {"text": "lowercase", "weight": 2, "verifier": {"type": "regex", "pattern": "[a-z]"}},
    {"text": "no digit", "verifier": {"type": "regex", "pattern": "[0-9]", "negate": True}},
]


# Configs the trainer must refuse before training, and what their message must say.
ERRORS = {
    "k1_in_loss": (
        {"rl.kl.placement": "in_loss", "rl.kl.estimator": "k1"},
        r"config\.rl\.kl\.placement='in_loss', estimator='k1': .* Use estimator 'k2', 'k3'",
    ),
    "one_sample": (
        {"rl.num_samples": 1},
        r"config\.rl\.advantage='grpo' compares .* set config\.rl\.num_samples >= 2 \(it is 1\)",
    ),
    "advantage": (
        {"rl.advantage": "grpoo"},
        r"config\.rl\.advantage='grpoo': unknown advantage estimator .*known estimators: .*grpo",
    ),
    "policy_loss": (
        {"rl.policy_loss": "ppo_clipp"},
        r"config\.rl\.policy_loss='ppo_clipp': unknown policy loss .*ppo_clip",
    ),
    "no_model_workdir": (
        {"reward.kind": "model"},
        r"config\.reward\.kind='model' needs config\.reward\.model_workdir",
    ),
    "constraints_kind": (
        {"reward.constraints.thresholds": (1.0,)},
        r"config\.reward\.constraints\.thresholds=\(1\.0,\): constraints act on the components "
        r"of config\.reward\.kind='combined' \(it is 'gold'\); set kind='combined'",
    ),
    "constraints_count": (
        {"reward.kind": "combined", "reward.components": "gold:1.0"}
        | {"reward.constraints.thresholds": (1.0, 2.0)},
        r"config\.reward\.constraints\.thresholds=\(1\.0, 2\.0\): give one finite threshold per "
        r"component of config\.reward\.components \(1: gold\)",
    ),
    "components_names": (
        {"reward.kind": "combined", "reward.components": "gold:1.0,gold:2.0"},
        r"config\.reward\.components='gold:1\.0,gold:2\.0': component names \['gold', 'gold'\] "
        r"repeat; name them",
    ),
    "minibatches": (
        {"rl.num_minibatches": 3},
        r"config\.rl\.num_minibatches=3 must divide .*config\.train\.batch_size x config\.rl\."
        r"num_samples = 8",
    ),
}


BACKBONE_ERROR = (
    r"config\.init_from=.* is a reward model whose backbone has model\.d_ff=64; this run's "
    r"config\.model has d_ff=32: set --config\.model\.d_ff=64"
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, env):
    """Every run of this file: the worker's in-process runs and, beside it (the machine's other
    core), the 8-device run through `python -m rewardjax.main`."""
    root = tmp_path_factory.mktemp("rl")
    log1 = {"train.log_every": 1}
    plan = []

    def add(name, config, overrides=None, workdir=None):
        workdir = str(workdir or root / name)
        plan.append(dict(name=name, config=config, overrides=overrides or {}, workdir=workdir))
        return workdir

    dirs = {}
    for algo in ALGORITHMS:
        extra = {"grpo": GRPO, "remax": TRUNCATED}.get(algo, {})
        dirs[algo] = add(algo, f"rl:{algo},smoke", {**log1, **extra})
    for name, (overrides, _) in ERRORS.items():
        dirs[f"error_{name}"] = add(f"error_{name}", "rl:grpo,smoke", overrides)
    # Stopped after step 2 (a time-sliced job), then the same command again.
    dirs["resumed"] = add("stopped", "rl:grpo,smoke", {**log1, **GRPO, "train.stop_at_step": 2})
    add("resumed", "rl:grpo,smoke", {**log1, **GRPO}, workdir=dirs["resumed"])
    dirs["rm"] = add("rm", "reward_model:smoke", {"model.vocab_size": 9})
    dirs["rl_rm"] = add(
        "rl_rm",
        "rl:grpo,smoke",
        {**log1, **GRPO, "reward.kind": "model", "reward.model_workdir": dirs["rm"]}
        | {"init_from": dirs["rm"]},
    )
    dirs["error_backbone"] = add(
        "error_backbone", "rl:grpo,smoke", {"init_from": dirs["rm"], "model.d_ff": 32}
    )
    dirs["sft"] = add("sft", "sft:smoke", {"model.vocab_size": 9})
    dirs["rl_sft"] = add("rl_sft", "rl:rloo,smoke", {**log1, "init_from": dirs["sft"]})
    dirs["combined"] = add(
        "combined",
        "rl:rloo,smoke",
        {**log1, "reward.kind": "combined", "reward.components": "gold:1.0"}
        | {"reward.transform": "log_sigmoid_centered"},
    )
    # Constrained: gold (at least θ, weight 1) and a bigram table (at most θ, weight 0.5).
    table = root / "table.npy"
    np.save(table, np.random.default_rng(0).normal(size=(8, 8)))
    constrained = {**log1, "reward.kind": "combined"} | CONSTRAINED
    constrained["reward.components"] = f"gold:1.0,p=bigram@{table}:0.5"
    dirs["constrained"] = add("constrained", "rl:rloo,smoke", constrained)
    dirs["constrained_resumed"] = add(
        "constrained_stopped", "rl:rloo,smoke", {**constrained, "train.stop_at_step": 2}
    )
    add("constrained_resumed", "rl:rloo,smoke", constrained, workdir=dirs["constrained_resumed"])
    # Text rewards on a byte-tokenised file: 8 prompts whose accepted answers are the letters.
    data, rubrics = root / "letters.jsonl", root / "rubrics.jsonl"
    prompts = [f"Name a letter ({i}):" for i in range(8)]
    data.write_text(
        "".join(json.dumps({"prompt": p, "response": c}) + "\n" for p in prompts for c in LOWER)
    )
    rubrics.write_text("".join(json.dumps({"prompt": p, "items": RUBRIC}) + "\n" for p in prompts))
    text = {**log1, **GRPO, "rl.log_samples": 32, "rl.max_new_tokens": 1, "model.vocab_size": 260}
    text |= {"data.source": "files", "data.layout": "sft", "data.train_path": str(data)}
    dirs["verifiable"] = add(
        "verifiable",
        "rl:grpo,smoke",
        {**text, "reward.kind": "verifiable", "reward.verifier": "exact_match"}
        | {"reward.extract": "none"},
    )
    dirs["rubric"] = add(
        "rubric",
        "rl:grpo,smoke",
        {**text, "reward.kind": "rubric", "reward.rubrics_path": str(rubrics)},
    )
    dirs["rollouts"] = add("rollouts", "rollouts")
    plan_file = root / "plan.json"
    plan_file.write_text(json.dumps(plan))

    dirs["sharded"] = str(root / "sharded")
    command = [sys.executable, "-m", "rewardjax.main", "--config=configs/rl.py:grpo,smoke"]
    command += [f"--workdir={dirs['sharded']}", "--cpu_devices=8", "--config.mesh.data=2"]
    command += ["--config.mesh.fsdp=4", "--config.train.batch_size=8"]
    command += ["--config.train.log_every=1"]
    procs = {
        "worker": subprocess.Popen(
            [sys.executable, __file__, str(plan_file)], cwd=REPO, env=env, **_PIPES
        ),
        "sharded": subprocess.Popen(command, cwd=REPO, env=env, **_PIPES),
    }
    outs = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=TIMEOUT)
            outs[name] = (proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    code, _, err = outs["worker"]
    assert code == 0, err[-4000:]
    results = json.loads(Path(str(plan_file) + ".results").read_text())
    return {"dirs": dirs, "results": results, "sharded": outs["sharded"]}


_PIPES = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ok(runs, name):
    result = runs["results"][name]
    assert result["ok"], result["traceback"]


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _state(workdir, step):
    """The checkpointed state of `workdir` at `step`, on this process's one device."""
    import jax
    import orbax.checkpoint as ocp

    path = os.path.join(workdir, "checkpoints", str(step), "state")
    checkpointer = ocp.StandardCheckpointer()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        checkpointer.metadata(path).item_metadata.tree,
    )
    return jax.tree.map(np.asarray, checkpointer.restore(path, target))


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _max_diff(a, b):
    import jax

    assert jax.tree.structure(a) == jax.tree.structure(b)
    return max(float(np.max(np.abs(x - y))) for x, y in zip(_leaves(a), _leaves(b)))


KEYS = ("reward", "gold_reward", "kl", "kl_beta", "entropy", "clip_fraction", "completion_length")
KEYS += ("loss", "policy_loss", "grad_norm", "param_norm", "advantage_std", "kl_base_chain")


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_every_algorithm_trains(runs, algo):
    _ok(runs, algo)
    workdir = runs["dirs"][algo]
    records = _records(workdir)
    assert [r["step"] for r in records] == list(range(1, NUM_STEPS + 1))
    own = {"value_loss": algo == "ppo", "filtered_groups": algo == "dapo"}
    for r in records:
        assert set(KEYS) <= set(r), set(KEYS) - set(r)
        assert {k: k in r for k in own} == own
        assert all(math.isfinite(v) for v in r.values()), r
        # The gold reward is the reward here; the synthetic task's completions are 8 tokens.
        assert r["reward"] == r["gold_reward"]
        assert r["completion_length"] < 8.0 if algo == "remax" else r["completion_length"] == 8.0
        assert 0.0 <= r["clip_fraction"] <= 1.0 and r["entropy"] > 0.0
    first = records[0]
    # The reference is the initial policy, and the rollout's log-probs are the policy's: at the
    # first iteration KL(pi || ref) is 0 and every importance ratio 1 (nothing clipped), to
    # float32 rounding of the sampler's cached and the trainer's full forward pass.
    assert abs(first["kl"]) < 1e-5, first
    assert first["clip_fraction"] == 0.0, first
    # The parameters moved at every saved step (2 and 4) and stayed finite.
    a, b = _state(workdir, 2), _state(workdir, 4)
    assert int(a["step"]) == 2 and int(b["step"]) == 4
    assert all(np.isfinite(x).all() for x in _leaves(b["params"]))
    assert _max_diff(a["params"]["policy"], b["params"]["policy"]) > 0.0
    betas = np.array([r["kl_beta"] for r in records], np.float64)
    if algo in ("dr_grpo", "dapo"):  # no KL term at all
        np.testing.assert_array_equal(betas, 0.0)
    elif algo == "ppo":
        # Ziegler et al.'s adaptive controller, beta' = beta (1 + clip(kl / 1 - 1, +-0.2) n / 1e4)
        # with n = 8 rollouts (2 prompts x 4 samples); the logged beta is the one the step used.
        kls = np.array([r["kl"] for r in records], np.float64)
        want = [0.05]
        for kl in kls[:-1]:
            want.append(want[-1] * (1 + np.clip(kl - 1.0, -0.2, 0.2) * 8 / 1e4))
        np.testing.assert_allclose(betas, want, rtol=1e-6)
        assert betas[-1] < betas[0]  # KL far below its target of 1: the coefficient falls
        assert all(r["value_loss"] > 0.0 for r in records)
        assert _max_diff(a["params"]["value"], b["params"]["value"]) > 0.0  # the critic learns
    else:  # a fixed coefficient: 0.04 in the loss (grpo, gspo), 0.05 in the reward (the others)
        np.testing.assert_array_equal(betas, np.float32(0.04 if algo in ("grpo", "gspo") else 0.05))
    if algo == "dapo":  # a fraction of the 2 groups of each iteration
        for r in records:
            assert r["filtered_groups"] * 2 in (0.0, 1.0, 2.0)
    stds = np.array([r["advantage_std"] for r in records], np.float64)
    if algo in ("grpo", "gspo", "dapo"):
        # Group-normalised with the unbiased std: a group of N = 4 with distinct rewards has
        # advantages of mean 0 and mean square (N - 1) / N, a group of equal rewards all 0; so
        # the logged std (over all tokens) is sqrt(3/4 * k / P) for k of the P prompts.
        prompts = 8 if algo == "grpo" else 2
        grid = 0.75 * np.arange(1, prompts + 1) / prompts
        assert all(np.min(np.abs(v**2 - grid)) < 1e-5 for v in stds), stds
    elif algo == "reinforce_pp":  # returns whitened over the batch's tokens
        np.testing.assert_allclose(stds, 1.0, rtol=1e-5)
    elif algo == "rloo":
        # The first iteration samples what Dr. GRPO's does (same key and parameters): RLOO's
        # leave-one-out advantage r_i - mean_{j != i} r_j is N / (N - 1) times Dr. GRPO's
        # group-centred reward (the KL in RLOO's reward is 0 at the first iteration).
        dr_grpo = _records(runs["dirs"]["dr_grpo"])[0]["advantage_std"]
        np.testing.assert_allclose(stds[0], 4 / 3 * dr_grpo, rtol=1e-5)


def _filtered_logp(logits, token, *, temperature, top_k, top_p):
    """NumPy (float64): log-prob of `token` under softmax(filter(logits / temperature)), with
    top-k's k largest logits, then top-p's smallest most-likely-first prefix of the renormalised
    rest whose mass reaches p (ties at either threshold kept); None if `token` is outside."""
    z = logits.astype(np.float64) / temperature
    keep = np.ones(z.shape, bool)
    if top_k:
        keep &= z >= np.sort(z)[::-1][top_k - 1]
    if top_p < 1.0:
        kept = np.where(keep, z, -np.inf)
        desc = np.sort(kept)[::-1]
        probs = np.exp(desc - desc[0]) / np.sum(np.exp(desc - desc[0]))
        n = 0
        while n < len(desc) and np.sum(probs[:n]) < top_p:  # the mass before token n
            n += 1
        keep &= z >= desc[n - 1]
    if not keep[token]:
        return None
    kept = z[keep]
    return z[token] - (kept.max() + np.log(np.sum(np.exp(kept - kept.max()))))


SAMPLING = [(1.5, 3, 1.0), (0.8, 0, 0.7)]  # temperature, top-k, top-p
PROMPT_WIDTH = 4


def _rollout(temperature, top_k, top_p) -> dict:
    """(Run by the worker.) Completions of three left-padded prompts from a tiny random policy
    with the sampler, the trainer's log-probs of them (`rl.token_logprobs` on the full forward
    pass of [prompt | completion]) and the logits of that pass, as NumPy arrays."""
    import jax
    import jax.numpy as jnp

    from rewardjax import sampling
    from rewardjax.models import CausalLM, TransformerConfig
    from rewardjax.train.tasks import rl as rl_task

    # A wide initialisation: peaked next-token distributions, so top-p keeps a few tokens.
    cfg = TransformerConfig(
        vocab_size=11, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32, init_std=0.3
    )
    model = CausalLM(cfg)
    params = jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 4), jnp.int32))
    # Prompts of 4, 2 and 1 real tokens, left-padded as the trainer lays them out.
    prompt_mask = np.array([[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]], np.int32)
    prompts = np.where(prompt_mask > 0, np.array([[3, 7, 1, 9], [0, 0, 4, 2], [0, 0, 0, 6]]), 0)
    n, length, stop = 3, 6, 5  # a row that emits token 5 stops: its mask ends there
    settings = dict(temperature=temperature, top_k=top_k, top_p=top_p)
    out = jax.jit(
        lambda p, x, m, k: sampling.sample(
            model, p, x, m, k, max_new_tokens=length, num_samples=n, stop_tokens=(stop,), **settings
        )
    )(params, prompts, prompt_mask, jax.random.key(1))
    rows = len(prompts) * n
    flat = lambda x: np.asarray(x).reshape(rows, length)
    completion, cmask = flat(out.tokens), flat(out.mask)
    tokens = np.concatenate([np.repeat(prompts, n, 0), completion], 1)
    mask = np.concatenate([np.repeat(prompt_mask, n, 0), cmask], 1)

    @jax.jit
    def trainer(p, tokens, mask):
        logits = model.apply(p, tokens, segment_ids=mask)[0]
        return logits, rl_task.token_logprobs(logits, tokens, where=mask, **settings)

    logits, recomputed = jax.device_get(trainer(params, tokens, mask))
    return dict(
        completion=completion,
        cmask=cmask,
        logits=logits[:, PROMPT_WIDTH - 1 : -1],  # those that predict the completion
        recomputed=recomputed[:, PROMPT_WIDTH:],
        sampled=flat(out.sampling_logprobs),
        full=flat(out.logprobs),  # temperature 1, no filter
    )


@pytest.mark.parametrize("temperature, top_k, top_p", SAMPLING)
def test_sampler_log_probs_equal_the_trainers(runs, temperature, top_k, top_p):
    """What the rollout records as the old log-prob is what the trainer computes for the same
    parameters (the importance ratio starts at 1), and both are the log-prob under the filtered
    distribution of a NumPy reference; padding after a stop reads 0 in both."""
    _ok(runs, "rollouts")
    i = SAMPLING.index((temperature, top_k, top_p))
    with np.load(os.path.join(runs["dirs"]["rollouts"], f"{i}.npz")) as f:
        a = dict(f)
    cmask, sampled, recomputed = a["cmask"], a["sampled"], a["recomputed"]
    rows = len(cmask)
    assert cmask.sum() > rows and (cmask == 0).any()  # some rows stopped early
    gain = 0.0  # how much the truncation raised a log-prob (its renormalisation)
    for i, t in zip(*np.nonzero(cmask)):
        row, token = a["logits"][i, t], a["completion"][i, t]
        want = _filtered_logp(row, token, temperature=temperature, top_k=top_k, top_p=top_p)
        assert want is not None, (i, t)  # the sampler drew inside the truncated support
        np.testing.assert_allclose([sampled[i, t], recomputed[i, t]], want, rtol=0, atol=1e-5)
        plain = _filtered_logp(row, token, temperature=1.0, top_k=0, top_p=1.0)
        np.testing.assert_allclose(a["full"][i, t], plain, rtol=0, atol=1e-5)
        scaled = _filtered_logp(row, token, temperature=temperature, top_k=0, top_p=1.0)
        gain = max(gain, want - scaled)
    assert (gain > 1e-2) == bool(top_k or top_p < 1.0), gain
    # Padding (after a stop) reads 0 in both, even where it lies outside the truncated support.
    np.testing.assert_allclose(recomputed, sampled, rtol=0, atol=1e-5)
    ratio = np.exp(np.sum(recomputed - sampled, -1))
    np.testing.assert_allclose(ratio, 1.0, rtol=0, atol=1e-4)


def _rows(workdir):
    """metrics.jsonl without the timing (steps_per_sec), which no two runs share."""
    return [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in _records(workdir)]


def test_resumed_run_equals_the_uninterrupted_run(runs):
    """GRPO stopped at step 2 (`train.stop_at_step`) and run again on the same workdir: the
    same metrics and, bitwise, the same final state (parameters, optimiser, KL coefficient, key):
    the rollout's key is folded from the step, the data position is checkpointed."""
    _ok(runs, "stopped")
    _ok(runs, "resumed")
    assert runs["results"]["stopped"]["step"] == 2 and runs["results"]["resumed"]["step"] == 4
    resumed, whole = runs["dirs"]["resumed"], runs["dirs"]["grpo"]
    assert _rows(resumed) == _rows(whole)
    a, b = _state(resumed, 4), _state(whole, 4)
    assert _max_diff(a["params"], _state(resumed, 2)["params"]) > 0.0
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_eight_devices_equal_one_device(runs):
    """GRPO with its 8 prompts split over data=2 x fsdp=4 (parameters too) on 8 CPU devices
    samples the same completions and logs the same metrics as on one device: to 1e-5 relative,
    or 1e-6 absolute for the quantities that are differences of nearly equal numbers (the KL,
    near 0, and the policy loss of centred advantages, near 1e-7), whose rounding is absolute."""
    _ok(runs, "grpo")
    code, _, err = runs["sharded"]
    assert code == 0, err[-4000:]
    sharded, single = _rows(runs["dirs"]["sharded"]), _rows(runs["dirs"]["grpo"])
    assert [r["step"] for r in sharded] == [r["step"] for r in single] == [1, 2, 3, 4]
    for a, b in zip(sharded, single):
        assert a.keys() == b.keys()
        # The same tokens were drawn: the fraction of invalid completions is a count.
        assert a["invalid_fraction"] == b["invalid_fraction"]
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    x, y = _state(runs["dirs"]["sharded"], 4), _state(runs["dirs"]["grpo"], 4)
    assert _max_diff(x["params"], y["params"]) <= 1e-5


@pytest.mark.parametrize("name", [*ERRORS, "backbone"])
def test_config_errors_name_the_field_and_the_fix(runs, name):
    result = runs["results"][f"error_{name}"]
    assert not result["ok"] and result["type"] == "ValueError", result
    pattern = ERRORS[name][1] if name in ERRORS else BACKBONE_ERROR
    assert re.search(pattern, result["error"]), result["error"]
    assert not os.path.exists(os.path.join(runs["dirs"][f"error_{name}"], "checkpoints"))


def _close_to(trained, start, *, updates):
    """`trained` is `start` moved by at most `updates` Adam steps of the learning rate (each
    moves a parameter by at most about lr), and moved at all."""
    diff = _max_diff(trained, start)
    assert 0.0 < diff <= 3 * updates * LR, diff


def test_learned_reward_and_a_policy_from_the_reward_model(runs):
    """reward.kind=model scores with the reward-model run, whose backbone the policy starts from
    (init_from): the reference is that policy, so the first KL is 0, and after 2 iterations the
    policy's transformer is the reward model's backbone moved by 2 Adam steps."""
    _ok(runs, "rm")
    _ok(runs, "rl_rm")
    records = _records(runs["dirs"]["rl_rm"])
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(math.isfinite(v) for r in records for v in r.values())
    # The proxy's scores, not the gold reward (logged beside it).
    assert all(r["reward"] != r["gold_reward"] for r in records)
    assert abs(records[0]["kl"]) < 1e-5
    rm = _state(runs["dirs"]["rm"], 6)["params"]["params"]["backbone"]
    policy = _state(runs["dirs"]["rl_rm"], 2)["params"]["policy"]["params"]["transformer"]
    _close_to(policy, rm, updates=2)


def test_policy_from_an_sft_run(runs):
    _ok(runs, "sft")
    _ok(runs, "rl_sft")
    records = _records(runs["dirs"]["rl_sft"])
    assert [r["step"] for r in records] == [1, 2, 3, 4] and abs(records[0]["kl"]) < 1e-5
    sft = _state(runs["dirs"]["sft"], 6)["params"]
    _close_to(_state(runs["dirs"]["rl_sft"], 2)["params"]["policy"], sft, updates=2)


if __name__ == "__main__":
    _work(sys.argv[1])


def test_reference_centred_reward_samples_the_reference(runs):
    """A combined reward through log-sigmoid centring needs per-prompt reference rewards: the
    iteration samples the reference's completions of the same prompts and the reward function
    centres on them, so every reward is log σ(·) < 0 whatever the gold reward is."""
    _ok(runs, "combined")
    records = _records(runs["dirs"]["combined"])
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(math.isfinite(r["reward"]) and r["reward"] < 0 for r in records)
    assert all(r["reward"] != r["gold_reward"] for r in records)


def _samples(workdir):
    with open(os.path.join(workdir, "samples.jsonl")) as f:
        return [json.loads(line) for line in f]


def _one_letter(text):
    return len(text) == 1 and text.isascii() and text.isalpha()


@pytest.mark.parametrize(
    "name, expected",
    [
        # exact match after normalisation (case folded): any one letter is an accepted answer
        ("verifiable", lambda c: float(_one_letter(c))),
        # gated by the hard item, else (1 * one letter + 2 * lowercase + 1 * no digit) / 4
        ("rubric", lambda c: (2.0 + 2.0 * c.islower()) / 4.0 if _one_letter(c) else 0.0),
    ],
)
def test_text_rewards_score_the_decoded_samples(runs, name, expected):
    """GRPO smoke runs on a byte-tokenised file with a verifiable reward (the prompt's responses
    are its answers) and a rubric reward: every completion of every iteration (samples.jsonl)
    got the reward recomputed here from its text, the logged mean reward is their mean, both
    outcomes occur, and no completion holds an id outside the tokenizer's (id 0, 256..259)."""
    _ok(runs, name)
    records, samples = _records(runs["dirs"][name]), _samples(runs["dirs"][name])
    assert [r["step"] for r in records] == list(range(1, NUM_STEPS + 1))
    assert len(samples) == 32 * NUM_STEPS
    for s in samples:
        assert s["prompt"].startswith("Name a letter (") and len(s["completion"]) == 1
        assert s["reward"] == pytest.approx(expected(s["completion"]), abs=1e-6), s
    for r in records:
        step = [s["reward"] for s in samples if s["step"] == r["step"]]
        assert r["reward"] == pytest.approx(np.mean(step), abs=1e-6)
    assert len({s["reward"] for s in samples}) >= 2  # the reward separates the samples


def test_constrained_multipliers_follow_dual_ascent(runs):
    """reward.constraints on a combined reward (gold: weight 1, at least 0.5; a bigram table p:
    weight 0.5, at most -0.5): λ starts at 0.1 and after each iteration takes the projected
    dual-ascent step, here in NumPy from the logged component means v_t:
    λ_{t+1} = max(0, λ_t + lr g_t), g = θ - v (at least), v - θ (at most). The logged reward is
    the Lagrangian's, Σ_k c_k v_k with c = (1 + λ_gold, 0.5 - λ_p); the gold component is the
    logged gold reward; the final checkpoint holds λ_5."""
    _ok(runs, "constrained")
    records = _records(runs["dirs"]["constrained"])
    assert [r["step"] for r in records] == list(range(1, NUM_STEPS + 1))
    theta = np.array(CONSTRAINED["reward.constraints.thresholds"])
    sign = np.array([-1.0, 1.0])  # g = sign * (v - θ)
    lr = CONSTRAINED["reward.constraints.lr"]
    lam = np.full(2, CONSTRAINED["reward.constraints.init"])
    for r in records:
        logged = np.array([r["constraint/gold/lambda"], r["constraint/p/lambda"]])
        np.testing.assert_allclose(logged, lam, rtol=1e-5, atol=1e-6)
        v = np.array([r["constraint/gold/mean"], r["constraint/p/mean"]])
        assert v[0] == pytest.approx(r["gold_reward"], abs=1e-6)
        weights = np.array([1.0 + lam[0], 0.5 - lam[1]])
        assert r["reward"] == pytest.approx(float(weights @ v), abs=1e-5)
        lam = np.maximum(0.0, lam + lr * sign * (v - theta))
    assert lam[1] > CONSTRAINED["reward.constraints.init"]  # the bound on p was violated
    state = _state(runs["dirs"]["constrained"], NUM_STEPS)
    np.testing.assert_allclose(state["extra"]["constraint_multipliers"], lam, rtol=1e-5, atol=1e-6)


def test_resumed_constrained_run_equals_the_uninterrupted_run(runs):
    """Stopped at step 2 and run again: the same metrics (λ included) and, bitwise, the same
    final state, the multipliers in TrainState.extra included."""
    _ok(runs, "constrained_stopped")
    _ok(runs, "constrained_resumed")
    resumed, whole = runs["dirs"]["constrained_resumed"], runs["dirs"]["constrained"]
    assert _rows(resumed) == _rows(whole)
    a, b = _state(resumed, NUM_STEPS), _state(whole, NUM_STEPS)
    assert "constraint_multipliers" in a["extra"]
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
