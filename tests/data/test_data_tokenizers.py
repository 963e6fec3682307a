"""ByteTokenizer, HFTokenizer from a locally trained tokenizer.json, chat-template rendering."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewardjax import data
from rewardjax.data import Message

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CONVERSATION = (Message("system", "Be brief."), Message("user", "How are you today?"))
REPLY = (Message("assistant", "I am fine, thank you."),)


@settings(max_examples=30, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=40))
def test_byte_tokenizer_round_trip(text):
    tok = data.ByteTokenizer()
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert all(1 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_byte_tokenizer_rejects_nul():
    with pytest.raises(ValueError, match="NUL"):
        data.ByteTokenizer().encode("a\x00b")


def test_byte_tokenizer_chat_and_plain():
    tok = data.ByteTokenizer()
    prompt, response = data.encode_example(tok, CONVERSATION, REPLY)
    assert tok.decode(prompt) == (
        "<|system|>\nBe brief.\n<|user|>\nHow are you today?\n<|assistant|>\n"
    )
    assert tok.decode(response) == "I am fine, thank you.\n"
    # A string response to a chat prompt is the assistant turn; a string prompt a user turn.
    assert data.encode_example(tok, CONVERSATION, REPLY[0].content) == (prompt, response)
    p, r = data.encode_example(tok, "How are you today?", REPLY)
    assert tok.decode(r) == "I am fine, thank you.\n"
    assert tok.decode(p) == "<|user|>\nHow are you today?\n<|assistant|>\n"
    # Two plain strings: no template, no EOS for bytes.
    assert data.encode_example(tok, "ab", "c") == ([97, 98], [99])


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A tiny byte-level BPE trained here, saved as tokenizer.json + tokenizer_config.json."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = ["How are you today?", "I am fine, thank you.", "Be brief.", "user assistant system"]
    tok.train_from_iterator(corpus * 10, trainer=trainer)
    folder = tmp_path_factory.mktemp("tok")
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHATML,
        "eos_token": "<|im_end|>",
        "bos_token": None,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_hf_tokenizer_encodes_like_tokenizers(tokenizer_dir):
    import tokenizers

    reference = tokenizers.Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    tok = data.HFTokenizer(str(tokenizer_dir))
    text = "How are you today? Fine."
    assert tok.encode(text) == reference.encode(text, add_special_tokens=False).ids
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == reference.get_vocab_size(with_added_tokens=True)
    assert tok.eos_id == reference.token_to_id("<|im_end|>")
    # Plain strings: the response ends with EOS.
    _, response = data.encode_example(tok, "How", " are you")
    assert response[-1] == tok.eos_id
    assert data.HFTokenizer(str(tokenizer_dir / "tokenizer.json")).encode(text) == tok.encode(text)


def test_hf_chat_template_matches_transformers(tokenizer_dir):
    import transformers

    reference = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_dir / "tokenizer.json"), eos_token="<|im_end|>"
    )
    as_dicts = [m._asdict() for m in CONVERSATION + REPLY]
    head = reference.apply_chat_template(
        as_dicts[:2], tokenize=False, add_generation_prompt=True, chat_template=CHATML
    )
    full = reference.apply_chat_template(as_dicts, tokenize=False, chat_template=CHATML)
    tok = data.HFTokenizer(str(tokenizer_dir))
    prompt, response = data.encode_example(tok, CONVERSATION, REPLY)
    assert prompt == reference.encode(head, add_special_tokens=False)
    assert tok.decode(prompt) == head
    assert tok.decode(prompt) + tok.decode(response) == full
    assert response[-2] == tok.eos_id  # "<|im_end|>" then "\n" close the assistant turn


def test_template_must_render_prompt_as_prefix():
    tok = data.ByteTokenizer()
    tok.chat_template = "{{ messages | length }}{% if add_generation_prompt %}!{% endif %}"
    with pytest.raises(ValueError, match="prefix"):
        data.encode_example(tok, CONVERSATION, REPLY)


def test_check_vocab_names_the_tokenizer_both_sizes_and_the_fix():
    data.check_vocab(256, 256, tokenizer="byte")  # every id 0..255 has an embedding row
    data.check_vocab(9, 256, tokenizer="byte")  # unused rows are harmless
    with pytest.raises(ValueError) as info:
        data.check_vocab(256, 9, tokenizer="byte")
    message = str(info.value)
    assert message.startswith("config.data.tokenizer=byte gives 256 token ids")
    assert "256 token ids" in message and "9 rows" in message
    assert "--config.model.vocab_size=256" in message and "the tokenizer the model" in message
    # The synthetic task's ids (its tokens + 1 for padding) name their own field.
    with pytest.raises(ValueError, match=r"^config\.data\.synthetic\.vocab_size=8 gives 9 token"):
        data.check_vocab(9, 5, tokenizer="8", field="config.data.synthetic.vocab_size")
    for bad in ((0, 9), (9, 0), (9.0, 9), (True, 9)):
        with pytest.raises(ValueError, match="positive int"):
            data.check_vocab(*bad, tokenizer="byte")


def test_check_vocab_on_real_tokenizers_and_presets(tokenizer_dir):
    from rewardjax.models import get_preset

    tiny = get_preset("tiny").vocab_size
    # The byte tokenizer fits the tiny preset: the default file-based run passes the check.
    data.check_vocab(data.ByteTokenizer().vocab_size, tiny, tokenizer="byte")
    # The BPE of the fixture (256 byte symbols, merges and special tokens) does not fit 256 rows.
    hf = data.HFTokenizer(str(tokenizer_dir))
    largest_id = max(
        json.loads((tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"].values()
    )
    assert hf.vocab_size > largest_id >= tiny
    with pytest.raises(ValueError, match=rf"{hf.vocab_size} token ids, .* {tiny} rows"):
        data.check_vocab(hf.vocab_size, tiny, tokenizer=str(tokenizer_dir))
    data.check_vocab(hf.vocab_size, hf.vocab_size, tokenizer=str(tokenizer_dir))


def test_hf_tokenizer_missing_or_corrupt_file_is_named(tmp_path):
    missing = str(tmp_path / "nope" / "tokenizer.json")
    with pytest.raises(FileNotFoundError, match=rf"{missing}: no such file.*'byte'"):
        data.HFTokenizer(missing)
    (tmp_path / "tokenizer.json").write_text("garbage")
    with pytest.raises(ValueError, match=r"tokenizer\.json: not a Hugging Face tokenizer file"):
        data.HFTokenizer(str(tmp_path))
