"""Chat templates: rendering through the runtime, and Model.chat."""

import pytest

import moir

# A ChatML-like template: the BOS, each turn between role and end markers,
# the assistant's opening when a reply is wanted. <|eot_id|> is a special
# token of the test tokenizer (gpt2-tiny).
SOURCE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
          "<|eot_id|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Größe?"}]


def test_render():
    template = moir.ChatTemplate(SOURCE, "mine.jinja")
    assert template.render(MESSAGES, bos_token="<s>") == (
        "<s><|system|>Be brief.<|eot_id|>\n<|user|>Größe?<|eot_id|>\n<|assistant|>")
    # Without a BOS (undefined prints nothing) and without the generation prompt;
    # content None is Python's None.
    assert template.render([{"role": "user", "content": None}], add_generation_prompt=False) == \
        "<|user|>None<|eot_id|>\n"


def test_template_errors():
    with pytest.raises(moir.FormatError, match="bad.jinja:1"):
        moir.ChatTemplate("{% if %}", "bad.jinja")
    refusing = moir.ChatTemplate("{{ raise_exception('no system turns') }}", "refuse.jinja")
    with pytest.raises(moir.InvalidArgumentError, match="refuse.jinja.*no system turns"):
        refusing.render(MESSAGES)
    template = moir.ChatTemplate(SOURCE)
    with pytest.raises(TypeError, match="message 0"):
        template.render(["not a message"])
    with pytest.raises(TypeError, match="message 1"):
        template.render([MESSAGES[0], {"role": "user", "content": 5}])


def test_artifact_without_chat_template(model):
    with pytest.raises(moir.UnsupportedError, match="holds no chat template") as e:
        model.chat(MESSAGES)
    assert str(model.path) in str(e.value)


def test_chat_generates_after_the_rendered_prompt(model):
    template = moir.ChatTemplate(SOURCE)
    text = model.apply_chat_template(MESSAGES, template=template)
    # The test tokenizer names no BOS: the template's bos_token is undefined.
    assert text == "<|system|>Be brief.<|eot_id|>\n<|user|>Größe?<|eot_id|>\n<|assistant|>"
    ids = model.tokenize(text)
    assert ids.count(2) == 2  # <|eot_id|> as its special token, not its characters
    reply = model.chat(MESSAGES, template=template, max_tokens=12, stream=False)
    assert reply == model.generate(ids, max_tokens=12, stream=False)
    assert reply == "".join(model.chat(MESSAGES, template=template, max_tokens=12))
    assert reply
