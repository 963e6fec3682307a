"""RuleReward (float32 whatever the rule returns, decoding, None and bad types), exact_match and
regex_format on tricky cases."""

import re

import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import data, rewards


class CharTokenizer(data.Tokenizer):
    """Ids 1..26 are 'a'..'z', 27 is ' ', 28 is an EOS token rendered as '</s>'."""

    vocab_size, eos_id = 29, 28

    def encode(self, text):
        return [27 if ch == " " else ord(ch) - 96 for ch in text]

    def decode(self, ids):
        return "".join("</s>" if i == 28 else " " if i == 27 else chr(i + 96) for i in ids)


def _inputs(prompts, completions, tok, *, stop=True, with_text=False):
    """Right-padded prompts and completions (closed by the EOS id when `stop`)."""
    p_ids = [tok.encode(p) for p in prompts]
    c_ids = [tok.encode(c) + ([tok.eos_id] if stop else []) for c in completions]

    def pad(rows):
        width = max(1, *map(len, rows))
        ids = np.zeros((len(rows), width), np.int32)
        mask = np.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = r, 1
        return ids, mask

    text = (list(prompts), list(completions)) if with_text else (None, None)
    return rewards.RewardInputs(*pad(p_ids), *pad(c_ids), *text)


def test_int_and_bool_rules_give_float32_from_decoded_text():
    tok = CharTokenizer()
    inputs = _inputs(["ab", "c"], ["xyz", ""], tok)
    lengths = rewards.RuleReward(lambda p, c: len(c), tokenizer=tok)(inputs)
    assert lengths.rewards.dtype == jnp.float32 and lengths.token_rewards is None
    np.testing.assert_array_equal(lengths.rewards, [3.0, 0.0])  # the EOS is stripped
    flags = rewards.RuleReward(lambda p, c: c.startswith("x") and p == "ab", tokenizer=tok)(inputs)
    assert flags.rewards.dtype == jnp.float32
    np.testing.assert_array_equal(flags.rewards, [1.0, 0.0])
    scalars = rewards.RuleReward(lambda p, c: np.int64(7) if c else jnp.float32(0.5))(
        _inputs(["ab", "c"], ["xyz", ""], tok, with_text=True)
    )
    np.testing.assert_array_equal(scalars.rewards, np.asarray([7.0, 0.5], np.float32))


def test_none_is_invalid_and_bad_types_raise():
    tok = CharTokenizer()
    inputs = _inputs(["a", "b"], ["yes", "no"], tok)
    out = rewards.RuleReward(
        lambda p, c: None if c == "no" else 2, tokenizer=tok, invalid_reward=-1.0
    )(inputs)
    np.testing.assert_array_equal(out.rewards, [2.0, -1.0])
    np.testing.assert_array_equal(out.aux["invalid"], [0.0, 1.0])

    def wordy(prompt, completion):
        return "1.0"

    with pytest.raises(TypeError, match=r"wordy returned str .* row 0"):
        rewards.RuleReward(wordy, tokenizer=tok)(inputs)
    with pytest.raises(
        ValueError, match=r"RuleReward needs text: RewardInputs.prompt_text is None"
    ):
        rewards.RuleReward(lambda p, c: 1.0)(inputs)


def test_exact_match_tricky_cases():
    answers = {"q1": "42", "q2": ["Paris", "paris"], "q3": "a  b"}
    rule = rewards.exact_match(answers)
    assert rule("q1", "42") and rule("q1", " 42\n")  # whitespace around is ignored
    assert not rule("q1", "420") and not rule("q1", "4 2")  # no substring or split match
    assert rule("q2", "paris") and not rule("q2", "PARIS")  # case-sensitive, any listed answer
    assert rule("q3", "a b\t")  # runs of whitespace collapse on both sides
    with pytest.raises(ValueError, match="no reference answer for prompt 'q4'"):
        rule("q4", "42")
    raw = rewards.exact_match(answers, normalize=None)
    assert not raw("q1", " 42") and raw("q1", "42")

    def after_hashes(completion):
        parts = completion.rsplit("####", 1)
        return parts[1] if len(parts) == 2 else None

    gsm = rewards.exact_match(lambda prompt: prompt.split("=")[-1], extract=after_hashes)
    assert gsm("6*7=42", "so 6*7 is #### 42")
    assert not gsm("6*7=42", "the answer is 42")  # no answer marker: 0, not a match on the text
    assert not gsm("6*7=42", "#### 41 #### 4")  # the last marker counts
    tok = CharTokenizer()
    out = rewards.RuleReward(rewards.exact_match({"ab": "xy"}), tokenizer=tok)(
        _inputs(["ab", "ab"], ["xy", "x y"], tok)
    )
    np.testing.assert_array_equal(out.rewards, [1.0, 0.0])


def test_regex_format_fullmatch_and_search():
    strict = rewards.regex_format(r"\d+")
    assert strict("", "123") and not strict("", "123\n") and not strict("", "x123")
    # re.search with `$` accepts a trailing newline; fullmatch does not.
    anchored = rewards.regex_format(r"^\d+$", mode="search")
    assert anchored("", "123\n") and not anchored("", "12a")
    loose = rewards.regex_format(r"\d+", mode="search")
    assert loose("", "x123") and not loose("", "none")
    think = r"<think>.*</think>\s*\S.*"
    text = "<think>a\nb</think> answer"
    assert not rewards.regex_format(think)("", text)  # '.' stops at the newline
    assert rewards.regex_format(think, flags=re.DOTALL)("", text)
    lines = rewards.regex_format(r"^Answer: \w+$", mode="search", flags=re.MULTILINE)
    assert lines("", "work\nAnswer: yes\nmore") and not lines("", "work Answer: yes")
    with pytest.raises(ValueError, match="mode"):
        rewards.regex_format("x", mode="match")


def test_rule_reward_is_a_reward_function():
    assert isinstance(rewards.RuleReward(lambda p, c: 1), rewards.RewardFunction)
