"""Verifiable rewards on tricky cases (1/2 vs 0.5, trailing spaces, unicode minus, nested boxes,
ambiguous letters, tags out of order), the length penalty against a Python loop, and the
reference-answer likelihood against a NumPy log-softmax of a tiny CausalLM's logits on rows built
by hand, one row at a time without padding."""

import functools
from fractions import Fraction

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import data, models, rewards
from rewardjax.rewards import verifiable as vr


class CharTokenizer(data.Tokenizer):
    """Ids 1..26 are 'a'..'z', 27 is ' ', 28 is an EOS token rendered as '</s>'."""

    vocab_size, eos_id = 29, 28

    def encode(self, text):
        return [27 if ch == " " else ord(ch) - 96 for ch in text]

    def decode(self, ids):
        return "".join("</s>" if i == 28 else " " if i == 27 else chr(i + 96) for i in ids)


def _text_inputs(prompts, completions):
    """Inputs that carry their text; the ids are one placeholder token per row."""
    b = len(prompts)
    ones = np.ones((b, 1), np.int32)
    return rewards.RewardInputs(ones, ones, ones, ones, list(prompts), list(completions))


# ---------------------------------------------------------------------------------- normalised


@pytest.mark.parametrize(
    "answer, reference, expected",
    [
        ("Paris  ", "Paris", 1.0),  # trailing spaces
        ("  new   york ", "New York", 1.0),  # inner whitespace, case folded
        ("Paris.", "paris", 1.0),  # trailing punctuation
        ("\u22123", "-3", 1.0),  # unicode minus
        ("\uff13\uff14", "34", 1.0),  # full-width digits (NFKC)
        ("ﬁne", "fine", 1.0),  # ligature (NFKC)
        ("Paris", "Pariss", 0.0),
        ("-3", "3", 0.0),
        ("0.5", "1/2", 0.0),  # not numeric: that is math_match's job
    ],
)
def test_normalized_match(answer, reference, expected):
    rule = vr.normalized_match({"q": reference})
    assert rule("q", answer) == expected


def test_normalized_match_options():
    assert not vr.normalized_match({"q": "Paris"}, case_sensitive=True)("q", "paris")
    assert not vr.normalized_match({"q": "Paris"}, strip_punctuation=False)("q", "Paris.")
    assert vr.normalized_match({"q": ["a", "b"]}, extract=vr.extract_tag)(
        "q", "<answer> B </answer>"
    )
    assert not vr.normalized_match({"q": "a"}, extract=vr.extract_tag)("q", "a")  # no tag
    with pytest.raises(ValueError, match="no reference answer for prompt 'other'"):
        vr.normalized_match({"q": "a"})("other", "a")


# ---------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    "text, value",
    [
        ("1/2", Fraction(1, 2)),
        ("0.5", Fraction(1, 2)),
        (".5", Fraction(1, 2)),
        ("\\frac{1}{2}", Fraction(1, 2)),
        ("\\dfrac12", Fraction(1, 2)),
        ("\\tfrac{3}{4}", Fraction(3, 4)),
        ("-\\frac{1}{3}", Fraction(-1, 3)),
        ("\\frac{-1}{3}", Fraction(-1, 3)),
        ("\u22122", Fraction(-2)),
        ("+2.50", Fraction(5, 2)),
        ("1,000", Fraction(1000)),
        ("1,234,567.5", Fraction(2469135, 2)),
        ("1{,}000", Fraction(1000)),
        ("1\\,000", Fraction(1000)),
        ("1e3", Fraction(1000)),
        ("2.5E-2", Fraction(1, 40)),
        ("1.5\\times10^{3}", Fraction(1500)),
        ("2 \\cdot 10^3", Fraction(2000)),
        ("$42$", Fraction(42)),
        ("\\$42", Fraction(42)),
        ("x = 7", Fraction(7)),
        ("90^\\circ", Fraction(90)),
        ("0.1", Fraction(1, 10)),  # exact: not the float 0.1000000000000000055...
        ("50%", Fraction(1, 2)),
        ("50\\%", Fraction(1, 2)),
        ("1,5", None),  # not a thousands separator
        ("\\sqrt{2}", None),
        ("1 1/2", None),  # a mixed number is ambiguous
        ("1 000", None),
        ("(1, 2)", None),
        ("\\frac{1}{0}", None),
        ("", None),
        ("abc", None),
    ],
)
def test_parse_number(text, value):
    assert vr.parse_number(text) == value


def test_parse_number_percent_ignore():
    assert vr.parse_number("50%", percent="ignore") == 50
    with pytest.raises(ValueError, match="percent="):
        vr.parse_number("1", percent="either")


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("1/2", "0.5", True),
        ("\\frac{1}{2}", "0.50", True),
        ("\\dfrac12", "1/2", True),
        ("1,000", "1000", True),
        ("1e3", "1000.0", True),
        ("+7", "7", True),
        ("\u22127", "-7", True),
        ("-7", "7", False),
        ("50%", "0.5", True),  # percent="either": 0.5 or 50
        ("50%", "50", True),
        ("50%", "5", False),
        ("0.333", "1/3", False),  # exact by default
        ("\\frac{\\sqrt{3}}{2}", "\\dfrac{\\sqrt{3}}{2}", True),  # string form
        ("\\left( 1, 2 \\right)", "(1,2)", True),
        ("\\sqrt{2}", "1.41421", False),
        ("", "", False),
    ],
)
def test_math_equal(a, b, expected):
    assert vr.math_equal(a, b) is expected
    assert vr.math_equal(b, a) is expected  # symmetric


def test_math_equal_tolerance_and_percent_modes():
    assert vr.math_equal("0.333", "1/3", rel_tol=1e-2)
    assert not vr.math_equal("0.333", "1/3", rel_tol=1e-4)
    assert vr.math_equal("3.14", "3.1416", abs_tol=0.01)
    assert not vr.math_equal("50%", "50", percent="divide")
    assert vr.math_equal("50%", "50", percent="ignore")
    assert not vr.math_equal("50%", "0.5", percent="ignore")
    with pytest.raises(ValueError, match="percent="):
        vr.math_equal("1", "1", percent="both")


@pytest.mark.parametrize(
    "text, boxed",
    [
        ("so \\boxed{5}.", "5"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces
        ("\\boxed{1} then \\boxed{2}", "2"),  # the last wins
        ("\\boxed{\\boxed{3}}", "3"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces are not braces
        ("\\fbox{4}", "4"),
        ("\\boxed{1} and \\boxed{2", None),  # the last is never closed (truncated)
        ("no box", None),
    ],
)
def test_extract_boxed(text, boxed):
    assert vr.extract_boxed(text) == boxed


def test_math_match_rule_and_reward():
    rule = vr.math_match({"q1": "1/2", "q2": "\\boxed{1000}", "q3": ["3", "-3"]})
    assert rule("q1", "so $x = \\boxed{0.5}$.") == 1.0
    assert rule("q1", "\\boxed{0.5} wait, \\boxed{\\dfrac{1}{3}}") == 0.0  # the last box counts
    assert rule("q2", "The total is \\boxed{1,000}") == 1.0
    assert rule("q3", "\\boxed{\u22123}") == 1.0
    assert rule("q1", "1/2 without a box") == 0.0
    assert vr.math_match({"q1": "1/2"}, missing=None)("q1", "no box") is None
    assert vr.math_match({"q1": "1/2"}, extract=None)("q1", " 0.5 ") == 1.0
    out = rewards.RuleReward(vr.math_match({"q1": "1/2"}, missing=None))(
        _text_inputs(["q1", "q1", "q1"], ["\\boxed{2/4}", "\\boxed{2}", "none"])
    )
    np.testing.assert_array_equal(out.rewards, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(out.aux["invalid"], [0.0, 0.0, 1.0])


# ---------------------------------------------------------------------------------- choices


@pytest.mark.parametrize(
    "text, letter",
    [
        ("The answer is (B)", "B"),
        ("The answer is (B).", "B"),
        ("B)", "B"),
        ("B", "B"),
        ("**B**", "B"),
        ("(b)", "B"),
        ("B) 42 apples", "B"),
        ("Answer: C", "C"),
        ("The correct option is D because A is wrong", "D"),
        ("I think the answer is B. A is tempting but wrong.", "B"),
        ("The answer is **C**, since B fails", "C"),
        ("Final answer: \\boxed{A}", "A"),
        ("The answer is A.\nOn reflection, the final answer is C.", "C"),  # the last statement
        ("The answer is A or B", None),  # ambiguous
        ("Answer: A and C", None),
        ("\\boxed{A, B}", None),
        ("The answer is E", None),  # not a choice
        ("A cat sat on the mat", None),  # the article is no answer
        ("no idea", None),
    ],
)
def test_extract_choice(text, letter):
    assert vr.extract_choice(text) == letter


def test_choice_match_and_more_choices():
    rule = vr.choice_match({"q": "(B)"})
    assert rule("q", "The answer is B") == 1.0
    assert rule("q", "The answer is C") == 0.0
    assert rule("q", "A or B") == 0.0
    assert vr.choice_match({"q": "B"}, missing=None)("q", "A or B") is None
    assert vr.extract_choice("The answer is (J)", "ABCDEFGHIJ") == "J"
    with pytest.raises(ValueError, match="not one of the letters"):
        vr.choice_match({"q": "E"})("q", "The answer is A")


# ---------------------------------------------------------------------------------- format


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>step</think><answer>4</answer>", 1.0),
        ("\n<think>a\nb</think>\n\n<answer> 4 </answer>\n", 1.0),
        ("<think></think><answer>4</answer>", 1.0),  # an empty thought is allowed
        ("<think>a</think><answer> </answer>", 0.0),  # a blank answer is not
        ("<answer>4</answer><think>a</think>", 0.0),  # order
        ("<think>a</think>x<answer>4</answer>", 0.0),  # text between
        ("hi <think>a</think><answer>4</answer>", 0.0),  # text before
        ("<think>a</think><answer>4</answer> bye", 0.0),  # text after
        ("<think>a</think><think>b</think><answer>4</answer>", 0.0),  # twice
        ("<think>a</think><answer>4</answer><answer>5</answer>", 0.0),
        ("<think>a <answer>3</answer></think><answer>4</answer>", 0.0),  # nested
        ("<think>a</think><answer>4", 0.0),  # unclosed
        ("4", 0.0),
    ],
)
def test_tag_format(text, expected):
    assert vr.tag_format()("p", text) == expected


def test_tag_format_options():
    opened = vr.tag_format(think_opened_in_prompt=True)
    assert opened("p", "step</think><answer>4</answer>") == 1.0
    assert opened("p", "<think>step</think><answer>4</answer>") == 0.0
    assert vr.tag_format(allow_empty_answer=True)("p", "<think>a</think><answer></answer>") == 1.0
    assert vr.tag_format(think="reason")("p", "<reason>a</reason><answer>4</answer>") == 1.0
    assert vr.extract_tag("<think>a</think><answer> 4 </answer>") == "4"
    assert vr.extract_tag("<answer>4</answer><answer>5</answer>") is None
    assert vr.extract_tag("</answer>4<answer>") is None


# ---------------------------------------------------------------------------------- length


def test_length_penalty_against_a_loop():
    lengths = np.arange(0, 40, 3)
    for budget, coef, cap in [(10, 0.5, None), (10, 0.5, 4.0), (0, 1.0, None), (30, 0.1, 0.5)]:
        expected = []
        for n in lengths:
            p = coef * (n - budget) if n > budget else 0.0
            if cap is not None and p > cap:
                p = cap
            expected.append(-p)
        got = jax.jit(
            lambda x, b=budget, c=coef, m=cap: vr.length_penalty(x, budget=b, coef=c, max_penalty=m)
        )(lengths)
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_length_penalty_reward_tokens_and_chars():
    tok = CharTokenizer()
    prompts, completions = ["a", "b", "c"], ["ab", "abcdef", "abcdefghij"]
    p = [tok.encode(x) for x in prompts]
    c = [[*tok.encode(x), tok.eos_id] for x in completions]
    width = max(map(len, c)) + 2
    c_ids = np.zeros((3, width), np.int32)
    c_mask = np.zeros_like(c_ids)
    for i, row in enumerate(c):
        c_ids[i, : len(row)], c_mask[i, : len(row)] = row, 1
    inputs = rewards.RewardInputs(np.asarray(p), np.ones((3, 1), np.int32), c_ids, c_mask)
    tokens = rewards.LengthPenalty(4, coef=0.5)(inputs)  # lengths 3, 7, 11 (stop token counted)
    np.testing.assert_allclose(tokens.rewards, [0.0, -1.5, -3.5])
    np.testing.assert_array_equal(tokens.aux["length"], [3, 7, 11])
    chars = rewards.LengthPenalty(4, coef=0.5, max_penalty=2.0, unit="chars", tokenizer=tok)(inputs)
    np.testing.assert_allclose(chars.rewards, [0.0, -1.0, -2.0])  # 2, 6, 10 characters
    with pytest.raises(ValueError, match="tokenizer"):
        rewards.LengthPenalty(4, unit="chars")(inputs)
    with pytest.raises(ValueError, match="unit="):
        rewards.LengthPenalty(4, unit="words")


# ---------------------------------------------------------------------------------- likelihood

CONFIG = models.TransformerConfig(
    vocab_size=29, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32
)


@pytest.fixture(scope="module")
def causal_lm():
    model = models.CausalLM(CONFIG)
    tokens = np.ones((1, 4), np.int32)
    shapes = jax.eval_shape(
        lambda k: nn.meta.unbox(model.init(k, tokens, segment_ids=tokens)), jax.random.key(0)
    )
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: (0.5 * rng.standard_normal(x.shape)).astype(x.dtype), shapes)
    return model, params


REF_WIDTH = 64  # hand-built rows are right-padded to this width: one compilation of the reference


@functools.cache
def _jit_apply(model):
    return jax.jit(lambda params, tokens, mask: model.apply(params, tokens, segment_ids=mask)[0])


def _numpy_reference_logprob(model, params, head, answer):
    """log p(answer | head) from the model's logits on the row `head + answer` (right-padded,
    causal: padding does not reach the real positions), with a NumPy log-softmax."""
    n = len(head) + len(answer)
    row, mask = np.zeros((1, REF_WIDTH), np.int32), np.zeros((1, REF_WIDTH), np.int32)
    row[0, :n], mask[0, :n] = head + answer, 1
    logits = np.asarray(_jit_apply(model)(params, row, mask)[0], np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    return sum(logp[len(head) + j - 1, a] for j, a in enumerate(answer))


def _token_inputs(tok, prompts, completions):
    """Left-padded prompts, right-padded completions closed by the stop token (which the reward
    drops before appending the answer); pad ids are arbitrary nonzero ids; no text."""
    p_ids = [tok.encode(p) for p in prompts]
    c_ids = [[*tok.encode(c), tok.eos_id] for c in completions]
    b, pw, cw = len(prompts), max(map(len, p_ids)) + 1, max(map(len, c_ids)) + 2
    pt, pm = np.full((b, pw), 5, np.int32), np.zeros((b, pw), np.int32)
    ct, cm = np.full((b, cw), 7, np.int32), np.zeros((b, cw), np.int32)
    for i, (p, c) in enumerate(zip(p_ids, c_ids)):
        pt[i, pw - len(p) :], pm[i, pw - len(p) :] = p, 1
        ct[i, : len(c)], cm[i, : len(c)] = c, 1
    return rewards.RewardInputs(pt, pm, ct, cm)


def test_reference_likelihood_matches_numpy(causal_lm):
    model, params = causal_lm
    tok = CharTokenizer()
    prompts = ["what is two", "name a cat", "what is two"]
    completions = ["it is", "tom", "maybe three or so"]
    answers = {"what is two": "two", "name a cat": "felix"}
    inputs = _token_inputs(tok, prompts, completions)  # no text: prompts are decoded
    expected_sum, counts = [], []
    for p, c in zip(prompts, completions):
        answer = tok.encode(" answer " + answers[p])
        head = tok.encode(p) + tok.encode(c)
        expected_sum.append(_numpy_reference_logprob(model, params, head, answer))
        counts.append(len(answer))
    expected_sum = np.asarray(expected_sum)
    mean = rewards.ReferenceLikelihoodReward(model, params, answers, tok, separator=" answer ")
    out = mean(inputs)
    assert out.rewards.dtype == jnp.float32 and out.rewards.shape == (3,)
    np.testing.assert_allclose(out.rewards, expected_sum / np.asarray(counts), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out.aux["answer_tokens"], counts)
    np.testing.assert_array_equal(out.aux["truncated"], [0.0, 0.0, 0.0])
    total = rewards.ReferenceLikelihoodReward(
        model, params, [answers[p] for p in prompts], tok, reduce="sum", separator=" answer "
    )(inputs)
    np.testing.assert_allclose(total.rewards, expected_sum, rtol=1e-4, atol=1e-4)
    # The completion conditions the answer: the two rows of one prompt differ.
    assert abs(float(out.rewards[0]) - float(out.rewards[2])) > 1e-3

    # max_length cuts the start of a long prompt (counted); the completion and answer are kept.
    prompts = ["what is two " * 3, "name a cat", "what is two " * 6]
    completions = ["it is", "tom", "so"]
    cut = rewards.ReferenceLikelihoodReward(
        model, params, ["two", "felix", "two"], tok, separator=" answer ", max_length=64
    )(_token_inputs(tok, prompts, completions))
    expected = []
    for p, c, a in zip(prompts, completions, ["two", "felix", "two"]):
        answer = tok.encode(" answer " + a)
        keep = min(len(p), 64 - len(answer) - len(c))
        head = tok.encode(p)[len(p) - keep :] + tok.encode(c)
        expected.append(_numpy_reference_logprob(model, params, head, answer) / len(answer))
    np.testing.assert_allclose(cut.rewards, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(cut.aux["truncated"], [0.0, 0.0, 1.0])


def test_reference_likelihood_errors(causal_lm):
    model, params = causal_lm
    tok = CharTokenizer()
    inputs = _text_inputs(["q"], ["a"])
    with pytest.raises(ValueError, match="no reference answer for prompt 'q'"):
        rewards.ReferenceLikelihoodReward(model, params, {"other": "x"}, tok)(inputs)
    with pytest.raises(ValueError, match="2 per-row references for B=1"):
        rewards.ReferenceLikelihoodReward(model, params, ["x", "y"], tok)(inputs)
    with pytest.raises(ValueError, match="encodes to no tokens"):
        rewards.ReferenceLikelihoodReward(model, params, [""], tok)(inputs)
    with pytest.raises(ValueError, match="ids but the model's embedding"):
        rewards.ReferenceLikelihoodReward(model, params, ["x"], data.ByteTokenizer())
