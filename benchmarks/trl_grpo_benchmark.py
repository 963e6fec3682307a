"""TRL GRPO iterations/s: `GRPOTrainer` (HF generate, no vLLM) on a tiny random Llama, CPU.

Runs in the separate TRL environment (TRL is not a rewardjax dependency):

    bash benchmarks/setup_trl_env.sh .venv-trl
    .venv-trl/bin/python benchmarks/trl_grpo_benchmark.py [--prompts 8 --generations 8 ...]

One iteration = one optimiser step of `GRPOTrainer.train()`: generate `generations` completions of
each of `prompts` prompts with `generate` (sampling at temperature 1, no top-k / top-p, exactly
`new_tokens` tokens: `min_new_tokens` = `max_new_tokens`, so no row stops early), score them with
the rule reward `preference_pairs.even_fraction` on the completion ids, group-normalised
advantages, then one update (one epoch, one minibatch of all P·N rows: `per_device_train_batch_size
= P·N`, `steps_per_generation = 1`, `num_iterations = 1`, so TRL reuses the current log-probs as
the old ones and runs no extra forward pass) of the clipped loss (`loss_type='grpo'`: token mean
per sequence, then the mean over sequences) plus `beta` times the k3 KL to a reference copy of the
initial policy (a reference forward pass each iteration when `beta > 0`). AdamW, clipping 1.0, a
linear decay (TRL's defaults), float32, no logging, no saving, no progress bar.

The model is built locally from a `transformers.LlamaConfig` with the dimensions of
`preference_pairs.py` and saved to a temporary folder (TRL builds the reference from the policy's
path); the prompts are `preference_pairs.make_prompts` (the ids written as words of a word-level
tokenizer whose ids are the token ids, checked to round-trip), in order (no shuffling), so both
sides see the same prompts in the same iterations. A callback times the last `steps` iterations.

Prints a human summary on stderr and one JSON object on stdout (read by `compare_trl_grpo.py`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings

import datasets
import preference_pairs
import torch
import transformers
import trl
from trl_benchmark import StepTimer, as_text, word_tokenizer


def llama_config(args) -> transformers.LlamaConfig:
    return transformers.LlamaConfig(
        vocab_size=args.vocab_size,
        hidden_size=args.d_model,
        num_hidden_layers=args.n_layers,
        num_attention_heads=args.n_heads,
        num_key_value_heads=args.n_kv_heads,
        intermediate_size=args.d_ff,
        rms_norm_eps=args.norm_eps,
        max_position_embeddings=args.prompt_len + args.new_tokens,
        pad_token_id=preference_pairs.PAD_ID,
        eos_token_id=preference_pairs.EOS_ID,
        bos_token_id=None,
        tie_word_embeddings=False,
    )


class EvenFraction:
    """TRL reward function: `even_fraction` of each completion's ids; records the lengths seen."""

    __name__ = "even_fraction"

    def __init__(self):
        self.lengths: set[int] = set()

    def __call__(self, prompts, completions, completion_ids, **kwargs) -> list[float]:
        self.lengths.update(len(ids) for ids in completion_ids)
        return [preference_pairs.even_fraction(ids) for ids in completion_ids]


class PartTimer:
    """`--breakdown`: wall time of some of the trainer's methods (wrapped on the instance) per
    timed iteration, e.g. `_generate` (HF generate) inside `_generate_and_score_completions`."""

    def __init__(self, trainer, names: tuple[str, ...], timer: StepTimer):
        self.seconds = {name: 0.0 for name in names}
        self.timer = timer
        for name in names:
            setattr(trainer, name, self.wrap(name, getattr(trainer, name)))

    def wrap(self, name, method):
        def timed(*a, **k):
            start = time.perf_counter()
            out = method(*a, **k)
            if self.timer.start is not None:  # after the warm-up
                self.seconds[name] += time.perf_counter() - start
            return out

        return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    preference_pairs.add_grpo_arguments(parser)
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time generation, scoring and the loss inside the timed iterations",
    )
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    logging.getLogger("trl").setLevel(logging.ERROR)
    datasets.disable_progress_bars()

    prompts = preference_pairs.make_prompts(args)
    tokenizer = word_tokenizer(args.vocab_size)
    texts = [as_text(p) for p in prompts]
    if tokenizer(texts[0], add_special_tokens=False)["input_ids"] != prompts[0]:
        raise RuntimeError("the word tokenizer does not give back the benchmark's prompt ids")
    dataset = datasets.Dataset.from_dict({"prompt": texts})
    rows = args.prompts * args.generations
    reward = EvenFraction()
    timer = StepTimer(args.warmup)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(args.seed)
        model_dir = os.path.join(folder, "model")
        transformers.LlamaForCausalLM(llama_config(args)).save_pretrained(model_dir)
        config = trl.GRPOConfig(
            output_dir=os.path.join(folder, "out"),
            per_device_train_batch_size=rows,
            gradient_accumulation_steps=1,
            num_generations=args.generations,
            steps_per_generation=1,
            num_iterations=1,
            max_completion_length=args.new_tokens,
            generation_kwargs={"min_new_tokens": args.new_tokens},
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            beta=args.beta,
            loss_type="grpo",
            scale_rewards="group",
            epsilon=0.2,
            shuffle_dataset=False,
            max_steps=args.warmup + args.steps,
            learning_rate=args.learning_rate,
            lr_scheduler_type="linear",
            max_grad_norm=1.0,
            bf16=False,
            use_cpu=True,
            seed=args.seed,
            report_to="none",
            logging_strategy="no",
            save_strategy="no",
            disable_tqdm=True,
            log_completions=False,
        )
        trainer = trl.GRPOTrainer(
            model=model_dir,
            reward_funcs=reward,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[timer],
        )
        trainer.remove_callback(transformers.PrinterCallback)  # keeps stdout to our JSON
        parts = None
        if args.breakdown:
            names = ("_generate", "_calculate_rewards", "_generate_and_score_completions")
            parts = PartTimer(trainer, names, timer)
        dtype = str(trainer.model.dtype)
        reference = trainer.ref_model is not None
        trainer.train()
    if timer.start is None:
        raise RuntimeError("the trainer stopped before the warm-up ended; raise --steps")
    if reward.lengths != {args.new_tokens}:
        raise RuntimeError(
            f"completion lengths {sorted(reward.lengths)}: expected all {args.new_tokens}"
        )
    seconds = (timer.end - timer.start) / args.steps
    results = {
        "library": "trl",
        "versions": {
            "trl": trl.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "dtype": dtype,
        "reference_model": reference,
        "seconds_per_iteration": seconds,
        "iterations_per_s": 1.0 / seconds,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }
    if parts is not None:
        # Per iteration: generation, scoring (rewards; the reference's forward when beta > 0 and
        # host work are the rest of _generate_and_score_completions), and the update (the rest).
        per = {k: v / args.steps for k, v in parts.seconds.items()}
        score = per.pop("_generate_and_score_completions")
        results["breakdown_s"] = {
            "generate": per["_generate"],
            "reward": per["_calculate_rewards"],
            "reference_and_host": score - per["_generate"] - per["_calculate_rewards"],
            "update": seconds - score,
        }
    print(
        f"TRL {trl.__version__} GRPOTrainer, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), load average {load_before:.1f}; {args.prompts} "
        f"prompts x {args.generations} completions x {args.new_tokens} new tokens, beta "
        f"{args.beta} (reference model: {reference}): {1 / seconds:.3f} iterations/s "
        f"({1e3 * seconds:.0f} ms/iteration)",
        file=sys.stderr,
    )
    if parts is not None:
        text = ", ".join(f"{k} {1e3 * v:.0f} ms" for k, v in results["breakdown_s"].items())
        print(f"parts (mean of {args.steps}): {text}", file=sys.stderr)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
