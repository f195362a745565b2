"""The real `openai` client against a running `strata serve` (run by tests/test_serve_openai.cpp).

Usage: serve_openai_client.py completions|chat BASE_URL MODEL EXPECTED_JSON
EXPECTED_JSON: {"prompt": str (completions) or "messages": [...] (chat), "max_tokens": int,
"ids": [the greedy token ids generate() gives]}.
completions: plain and streamed with usage, /v1/models, and the error types the client raises.
chat: plain and streamed with usage. Exit 0: all passed.
"""
import json
import sys

import openai


def main():
    mode, base_url, model, expected = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="not-needed", max_retries=0)
    if mode == "chat":
        return chat(client, model, expected)
    prompt, n, ids = expected["prompt"], expected["max_tokens"], expected["ids"]

    models = client.models.list()
    assert [m.id for m in models.data] == [model], models

    c = client.completions.create(model=model, prompt=prompt, max_tokens=n, temperature=0)
    choice = c.choices[0]
    assert choice.finish_reason == "length", choice
    assert choice.model_extra["token_ids"] == ids, (choice.model_extra, ids)
    assert c.usage.completion_tokens == n and c.usage.prompt_tokens > 0, c.usage
    print(f"completions: {n} tokens, finish {choice.finish_reason}, text {choice.text!r}")

    stream = client.completions.create(model=model, prompt=prompt, max_tokens=n, temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    got, text, usage, finish = [], "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            got += ch.model_extra.get("token_ids", [])
            text += ch.text
            finish = ch.finish_reason or finish
    assert got == ids, (got, ids)
    assert text == choice.text, (text, choice.text)
    assert finish == "length", finish
    assert usage is not None and usage.completion_tokens == n, usage
    print(f"streamed completions: {len(got)} tokens, usage {usage.prompt_tokens} + {usage.completion_tokens}")

    try:
        client.completions.create(model=model, prompt=prompt, max_tokens=n, temperature=-1)
        raise AssertionError("temperature -1 was accepted")
    except openai.BadRequestError as e:
        assert "temperature" in str(e), e
    try:
        client.completions.create(model="no-such-model", prompt=prompt, max_tokens=1)
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        assert "does not exist" in str(e), e
    print("errors: BadRequestError, NotFoundError as expected")

    return 0


def chat(client, model, expected):
    messages, n, ids = expected["messages"], expected["max_tokens"], expected["ids"]
    r = client.chat.completions.create(model=model, messages=messages, max_tokens=n, temperature=0)
    choice = r.choices[0]
    assert choice.message.role == "assistant", r
    assert choice.model_extra["token_ids"] == ids, (choice.model_extra, ids)
    assert r.usage.completion_tokens == n, r.usage
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=n, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    content, usage, got = "", None, []
    for chunk in stream:
        usage = chunk.usage or usage
        for ch in chunk.choices:
            content += ch.delta.content or ""
            got += ch.model_extra.get("token_ids", [])
    assert got == ids, (got, ids)
    assert content == choice.message.content, (content, choice.message.content)
    assert usage is not None and usage.completion_tokens == n, usage
    print(f"chat: {n} tokens, plain and streamed agree: {content!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
