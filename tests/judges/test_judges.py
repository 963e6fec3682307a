"""Judges against hand-computed probabilities: a tiny random Hugging Face Llama (built here, no
download) scores the same token rows in PyTorch, and the verdict probabilities are its softmax in
NumPy; pairwise order averaging, position bias and inconsistency by brute force; critique failure
counts against the greedy rationales; the probe's rate on a constructed table."""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from rewardjax import data, judges, rewards  # noqa: E402
from rewardjax.models import CausalLM  # noqa: E402
from rewardjax.models.checkpoint import load_hf  # noqa: E402

WORDS = (
    "[PAD] [UNK] <end> yes no A B 1 2 3 4 5 6 7 8 9 10 Question Response Answer Rating Criteria "
    "Reference answer Is the response correct ? or Which better from to : . , what is two plus"
).split()
TOL = 2e-5  # probabilities (float32 logits agree to ~1e-5)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("judge")
    vocab = {w: i for i, w in enumerate(dict.fromkeys(WORDS))}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    tokenizer = data.HFTokenizer(str(folder / "tokenizer.json"))
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=48,
    )
    hf = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.4)
    hf.eval()
    hf.save_pretrained(folder / "hf")
    cfg, params = load_hf(folder / "hf")
    return dict(hf=hf, model=CausalLM(cfg), params=params, tok=tokenizer, vocab=vocab)


def _hf_probs(hf, ids):
    """Softmax (NumPy, float64) of the HF model's next-token logits after `ids`."""
    with torch.no_grad():
        z = hf(input_ids=torch.tensor([ids])).logits[0, -1].double().numpy()
    e = np.exp(z - z.max())
    return e / e.sum()


def _hf_greedy(hf, ids, n):
    """n greedy tokens after `ids` (argmax of the HF model's logits, one step at a time)."""
    out = []
    for _ in range(n):
        out.append(int(np.argmax(_hf_probs(hf, list(ids) + out))))
    return out


PROMPTS = ["what is two plus two ?", "what is 1 plus 1 ?", "two plus 3", "10 plus 10 ?"]
RESPONSES = ["4", "the answer is 2", "5 .", "yes"]


def test_pointwise_yes_no_and_rating_match_softmax_of_hf_logits(setup):
    tok, vocab = setup["tok"], setup["vocab"]
    template = judges.TextTemplate(tok)
    judge = judges.PointwiseJudge(setup["model"], setup["params"], template, batch_size=4)
    out = judge(PROMPTS, RESPONSES, references=["4", None, "5", None], criteria="the answer")
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
        text = template.render_pointwise(p, r, ["4", None, "5", None][i], "the answer")
        probs = _hf_probs(setup["hf"], tok.encode(text))
        y, n = probs[vocab["yes"]], probs[vocab["no"]]
        np.testing.assert_allclose(out.score[i], y / (y + n), atol=TOL)
        np.testing.assert_allclose(out.raw_probs[i], [y, n], atol=TOL)
        np.testing.assert_allclose(out.verdict_mass[i], y + n, atol=TOL)
    assert "Reference answer : 4" not in template.render_pointwise("q", "r", None)
    assert "Reference answer: 4" in template.render_pointwise("q", "r", "4")

    ratings = [str(k) for k in range(1, 11)]
    rate = judges.TextTemplate(tok, pointwise=judges.RATING_POINTWISE_TEMPLATE)
    rater = judges.PointwiseJudge(
        setup["model"], setup["params"], rate, verdicts=ratings, values=range(1, 11), batch_size=4
    )
    out = rater(PROMPTS, RESPONSES)
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
        probs = _hf_probs(setup["hf"], tok.encode(rate.render_pointwise(p, r)))
        pk = np.asarray([probs[vocab[s]] for s in ratings])
        np.testing.assert_allclose(out.score[i], (pk / pk.sum()) @ np.arange(1, 11), atol=1e-4)
    assert np.ptp(np.asarray(out.score)) > 1e-3  # the rows differ: not a constant


def test_pairwise_averages_both_orders_against_brute_force(setup):
    tok, vocab = setup["tok"], setup["vocab"]
    template = judges.TextTemplate(tok)
    judge = judges.PairwiseJudge(setup["model"], setup["params"], template, batch_size=4)
    a, b = RESPONSES, RESPONSES[1:] + RESPONSES[:1]
    out = judge(PROMPTS, a, b)
    first_ab, first_ba = [], []
    for p, x, y in zip(PROMPTS, a, b):
        for order, store in (((x, y), first_ab), ((y, x), first_ba)):
            probs = _hf_probs(setup["hf"], tok.encode(template.render_pairwise(p, *order)))
            store.append(probs[vocab["A"]] / (probs[vocab["A"]] + probs[vocab["B"]]))
    first_ab, first_ba = np.asarray(first_ab), np.asarray(first_ba)
    np.testing.assert_allclose(out.prob_a, (first_ab + (1 - first_ba)) / 2, atol=TOL)
    np.testing.assert_allclose(out.prob_a_first, first_ab, atol=TOL)
    np.testing.assert_allclose(out.prob_a_second, 1 - first_ba, atol=TOL)
    bias = np.mean([(u + v) / 2 for u, v in zip(first_ab, first_ba)]) - 0.5
    np.testing.assert_allclose(out.position_bias, bias, atol=TOL)
    same_position = [(u > 0.5) == (v > 0.5) for u, v in zip(first_ab, first_ba)]
    np.testing.assert_array_equal(out.inconsistent, same_position)
    np.testing.assert_allclose(out.inconsistency_rate, np.mean(same_position))
    # Swapping a and b mirrors the corrected preference exactly.
    swapped = judge(PROMPTS, b, a)
    np.testing.assert_allclose(swapped.prob_a, 1 - np.asarray(out.prob_a), atol=1e-6)


def test_pairwise_from_orders_on_a_constructed_case():
    # Pair 0: always prefers the first shown (biased, inconsistent); pair 1: consistent for a.
    out = judges.pairwise_from_orders(np.asarray([0.9, 0.8]), np.asarray([0.7, 0.1]))
    np.testing.assert_allclose(out.prob_a, [(0.9 + 0.3) / 2, (0.8 + 0.9) / 2], atol=1e-6)
    np.testing.assert_allclose(out.position_bias, ((0.9 + 0.7) / 2 + (0.8 + 0.1) / 2) / 2 - 0.5)
    np.testing.assert_array_equal(out.inconsistent, [True, False])
    np.testing.assert_allclose(out.inconsistency_rate, 0.5)


def test_verdict_that_is_not_one_token_is_an_error_naming_it(setup):
    with pytest.raises(ValueError, match=r"'yes' is not one token .* \[121, 101, 115\]"):
        judges.verdict_token_ids(data.ByteTokenizer(), ["y", "yes"])
    assert judges.verdict_token_ids(data.ByteTokenizer(), ["Y", "N"]) == (89, 78)
    with pytest.raises(ValueError, match=r"'yes no' is not one token .*\['yes', 'no'\]"):
        judges.verdict_token_ids(setup["tok"], ["yes no"])
    with pytest.raises(ValueError, match=r"'maybe' .* decodes to '\[UNK\]'"):
        judges.verdict_token_ids(setup["tok"], ["maybe"])
    with pytest.raises(ValueError, match="'yes' is not one token"):
        judges.PointwiseJudge(
            setup["model"], setup["params"], judges.TextTemplate(data.ByteTokenizer())
        )
    with pytest.raises(ValueError, match="criteria are text"):
        judges.TokenTemplate(99).pointwise([1], [2], criteria="x")


def test_critique_counts_failures_against_greedy_rationales(setup):
    tok, vocab, hf = setup["tok"], setup["vocab"], setup["hf"]
    template = judges.TextTemplate(tok)
    pointwise = judges.PointwiseJudge(setup["model"], setup["params"], template, batch_size=4)
    rows = pointwise.rows(PROMPTS, RESPONSES)
    greedy = np.asarray([_hf_greedy(hf, row, 6) for row in rows])
    # End marker: a token some greedy rationales hold and others do not.
    counts = {t: sum(t in g for g in greedy) for t in set(greedy.ravel().tolist())}
    end = next(t for t, c in sorted(counts.items()) if 0 < c < len(rows))
    critic = judges.CritiqueJudge(
        pointwise,
        end_marker=end,
        verdict_prompt="Answer :",
        max_new_tokens=6,
        temperature=0.0,
        verdict_pattern=r"\b(yes|no)\b",
    )
    out = critic(PROMPTS, RESPONSES, jax.random.PRNGKey(1))
    inverse = {i: w for w, i in vocab.items()}
    expected = []
    for i, g in enumerate(greedy.tolist()):
        if end not in g:
            expected.append("no_end_marker")
            continue
        rationale = g[: g.index(end) + 1]
        assert out.rationales[i] == rationale
        words = [inverse[t] for t in rationale[:-1]]
        expected.append(None if {"yes", "no"} & set(words) else "unparsed_verdict")
        probs = _hf_probs(hf, rows[i] + rationale + tok.encode("Answer :"))
        y, n = probs[vocab["yes"]], probs[vocab["no"]]
        np.testing.assert_allclose(out.probs[i, 0], y / (y + n), atol=TOL)
    assert out.reasons == expected
    assert out.failures == {
        "no_end_marker": expected.count("no_end_marker"),
        "unparsed_verdict": expected.count("unparsed_verdict"),
    }
    assert out.failures["no_end_marker"] > 0
    failed = np.asarray([e is not None for e in expected])
    np.testing.assert_array_equal(out.failed, failed)
    assert np.isnan(np.asarray(out.score)[failed]).all()
    assert not np.isnan(np.asarray(out.score)[~failed]).any()
    assert judges.CritiqueJudge.summary(out)["failed"] == failed.sum()
    assert judges.parse_verdict("so the verdict is : no", r"\b(yes|no)\b", ["yes", "no"]) == "no"
    assert judges.parse_verdict("verdict : maybe", r"verdict : (\w+)", ["yes", "no"]) is None


def test_probe_rate_on_a_constructed_judge():
    table = {("p1", ":"): 0.9, ("p1", "Solution"): 0.2, ("p2", ":"): 0.5, ("p2", "Solution"): 0.4}
    table.update({("p1", "x"): float("nan"), ("p2", "x"): 0.7})

    def judge(prompts, responses, references):
        assert references is None
        return np.asarray([table[(p, r)] for p, r in zip(prompts, responses)])

    result = judges.false_positive_rate(
        judge, ["p1", "p2"], responses=[":", "Solution", "x"], threshold=0.5
    )
    # Positives: (p1, :), (p2, :), (p2, x); the NaN is not a positive.
    assert result.rate == pytest.approx(3 / 6)
    assert result.per_response == {":": 1.0, "Solution": 0.0, "x": 0.5}
    assert result.scores.shape == (2, 3)
    both = judges.probe_judges(
        {"strict": judge, "lax": judge},
        ["p1", "p2"],
        responses=[":", "Solution", "x"],
        threshold={"strict": 0.95, "lax": 0.1},
    )
    assert both["strict"].rate == 0.0 and both["lax"].rate == pytest.approx(5 / 6)


def test_probe_of_the_tiny_judge_equals_brute_force(setup):
    tok, vocab = setup["tok"], setup["vocab"]
    template = judges.TextTemplate(tok)
    judge = judges.PointwiseJudge(setup["model"], setup["params"], template, batch_size=4)
    result = judges.false_positive_rate(judge, PROMPTS[:2], threshold=0.5)
    hits = []
    for p in PROMPTS[:2]:
        for r in judges.MASTER_KEYS:
            probs = _hf_probs(setup["hf"], tok.encode(template.render_pointwise(p, r)))
            hits.append(probs[vocab["yes"]] / (probs[vocab["yes"]] + probs[vocab["no"]]) >= 0.5)
    assert result.rate == pytest.approx(np.mean(hits))


def test_judge_reward_and_rubric_hook(setup):
    tok, vocab = setup["tok"], setup["vocab"]
    template = judges.TextTemplate(tok)
    judge = judges.PointwiseJudge(setup["model"], setup["params"], template, batch_size=4)
    b = len(PROMPTS)
    inputs = rewards.RewardInputs(
        np.ones((b, 2), np.int32),
        np.ones((b, 2), np.int32),
        np.ones((b, 3), np.int32),
        np.ones((b, 3), np.int32),
        prompt_text=PROMPTS,
        completion_text=RESPONSES,
    )
    reward = judges.JudgeReward(judge)
    assert isinstance(reward, rewards.RewardFunction)
    out = reward(inputs)
    expected = []
    for p, r in zip(PROMPTS, RESPONSES):
        probs = _hf_probs(setup["hf"], tok.encode(template.render_pointwise(p, r)))
        expected.append(probs[vocab["yes"]] / (probs[vocab["yes"]] + probs[vocab["no"]]))
    expected = np.asarray(expected)
    np.testing.assert_allclose(out.rewards, expected, atol=TOL)
    assert out.rewards.dtype == np.float32 and not np.asarray(out.aux["invalid"]).any()
    log_odds = judges.JudgeReward(judge, reward="log_odds")(inputs).rewards
    np.testing.assert_allclose(log_odds, np.log(expected / (1 - expected)), atol=1e-4)

    # The rubric hook: one soft item answered by the judge, the question rendered as criteria.
    rubric = rewards.Rubric((rewards.RubricItem("is it right", 1.0, "soft"),))
    rr = rewards.RubricReward(rubric, judge=judge.as_rubric_judge())
    got = rr(inputs).rewards
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
        text = template.render_pointwise(p, r, None, "is it right")
        probs = _hf_probs(setup["hf"], tok.encode(text))
        ref = probs[vocab["yes"]] / (probs[vocab["yes"]] + probs[vocab["no"]])
        np.testing.assert_allclose(got[i], ref, atol=TOL)


def test_judge_reward_on_token_rows(setup):
    """TokenTemplate: rows from the ids alone ([prompt, sep, completion, sep]); ids outside the
    judge's vocabulary give the invalid reward."""
    model, params, hf = setup["model"], setup["params"], setup["hf"]
    sep, yes, no = 2, 3, 4
    judge = judges.PointwiseJudge(
        model, params, judges.TokenTemplate(sep), verdicts=(yes, no), batch_size=4
    )
    prompts = np.asarray([[0, 7, 8], [9, 10, 11]], np.int32)
    prompt_mask = np.asarray([[0, 1, 1], [1, 1, 1]], np.int32)
    completions = np.asarray([[12, 13, 0], [14, 999, 0]], np.int32)
    completion_mask = np.asarray([[1, 1, 0], [1, 1, 0]], np.int32)
    inputs = rewards.RewardInputs(prompts, prompt_mask, completions, completion_mask)
    out = judges.JudgeReward(judge)(inputs)
    probs = _hf_probs(hf, [7, 8, sep, 12, 13, sep])
    np.testing.assert_allclose(out.rewards[0], probs[yes] / (probs[yes] + probs[no]), atol=TOL)
    assert np.isnan(out.rewards[1]) and np.asarray(out.aux["invalid"]).tolist() == [0.0, 1.0]


def test_public_names():
    assert judges.__all__ == sorted(judges.__all__, key=lambda n: (not n.isupper(), n))
    for name in judges.__all__:
        assert getattr(judges, name) is not None, name
