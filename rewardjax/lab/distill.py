"""Distilling an exact law into a policy with the real SFT trainer (BOND by forward KL).

A BOND policy (Sessa et al. 2024) is a policy trained to match the best-of-n law π_n of a
reference π_ref under a reward r. On the enumerated world π_n is exact (`bon.bon_distribution`),
so the distillation needs no best-of-n sampling at all: draw responses from π_n itself and run
plain SFT (maximum likelihood) on them. SFT minimises the forward KL

    E_x KL(π_n(·|x) ‖ π_θ(·|x)) = E_x E_{y∼π_n}[-log π_θ(y|x)] - H(π_n),

one of the two halves of BOND's Jeffreys divergence (its "forward" term; the backward term is RL
on the quantile reward log F(r), `bon.bond_reward`). The records go through the trainer's file
path (`data.source = "files"`, layout "sft") with a word-level tokenizer whose ids are the
synthetic task's ids (token t ↦ id t + 1, 0 pads), so a run starts from the SFT reference
(`config.init_from`) with the same embedding table.

- `bon_law`: the exact best-of-n law of a reference law under a reward, per prompt.
- `sample_records`: SFT records drawn from an exact law over the enumerated responses.
- `write_id_tokenizer`: a `tokenizer.json` mapping the words "1".."V" to ids 1..V.
- `write_records`: JSONL records the trainer's "sft" layout reads.

Papers: Sessa et al. 2024, "BOND: Aligning LLMs with Best-of-N Distillation", arXiv 2407.14622;
Beirami et al. 2024, "Theoretical guarantees on the best-of-n alignment policy", arXiv 2401.01879.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Int

from rewardjax import bon
from rewardjax.data import synthetic

__all__ = ["bon_law", "sample_records", "write_id_tokenizer", "write_records"]


def bon_law(
    probs: Float[np.ndarray, "P Y"], reward: Float[np.ndarray, "P Y"], n: float
) -> Float[np.ndarray, "P Y"]:
    """The exact best-of-n law of `probs` under `reward`, per prompt (ties shared in proportion
    to π): π_n(y) = π(y) (F(y)^n - F⁻(y)^n) / Σ_{z: r(z)=r(y)} π(z), F(y) = P_π[r ≤ r(y)],
    F⁻(y) = P_π[r < r(y)] (`bon.bon_distribution`, float64 in, renormalised rows out).

    Args:
      probs: reference law π_ref over the Y enumerated responses, [P, Y].
      reward: the reward best-of-n selects by, [P, Y].
      n: n ≥ 1.

    Returns:
      [P, Y], rows summing to 1.
    """
    law = np.asarray(bon.bon_distribution(jnp.asarray(probs), jnp.asarray(reward), n), np.float64)
    law = np.clip(law, 0.0, None)
    return law / law.sum(-1, keepdims=True)


def sample_records(
    prompts: Int[np.ndarray, "P Pl"],
    responses: Int[np.ndarray, "Y T"],
    target: Float[np.ndarray, "P Y"],
    *,
    per_prompt: int,
    seed: int,
) -> list[dict[str, str]]:
    """`per_prompt` responses drawn iid from `target(·|x)` for each prompt x, as SFT records.

    Tokens are written as their model ids (`synthetic.to_ids`: token t is the word "t+1"),
    space-separated: {"prompt": "3 1 4 1", "response": "5 2 6 5"}.

    Args:
      prompts: vocabulary tokens, [P, Pl].
      responses: the enumerated responses (vocabulary tokens), [Y, T].
      target: the law to draw from, [P, Y] (rows summing to 1).
      per_prompt: samples per prompt.
      seed: NumPy generator seed.

    Returns:
      P * per_prompt records, prompt-major.
    """
    rng = np.random.default_rng(seed)
    words = lambda tokens: " ".join(str(int(t)) for t in np.asarray(synthetic.to_ids(tokens)))
    records = []
    for x, p in zip(prompts, np.asarray(target, np.float64)):
        picks = rng.choice(len(responses), size=per_prompt, p=p / p.sum())
        head = words(x)
        records.extend({"prompt": head, "response": words(responses[i])} for i in picks)
    return records


def write_records(path: str, records: Sequence[dict[str, str]]) -> str:
    """Writes `records` as JSONL (one object per line) at `path`; returns `path`."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def write_id_tokenizer(path: str, vocab_size: int) -> str:
    """A Hugging Face `tokenizer.json` at `path` whose ids are the synthetic task's model ids.

    Word-level on whitespace: "<pad>" ↦ 0 and the word "i" ↦ i for i = 1..V, so
    `HFTokenizer(path).encode("3 1 4") == [3, 1, 4]` and its vocabulary (V + 1) is the policy's
    embedding table (`config.model.vocab_size`). No EOS: responses have the task's fixed length.

    Args:
      path: the file to write.
      vocab_size: V, the task's vocabulary.

    Returns:
      `path`.
    """
    import tokenizers
    from tokenizers import models, pre_tokenizers

    vocab = {"<pad>": 0, **{str(i): i for i in range(1, vocab_size + 1)}}
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tok.save(path)
    return path
