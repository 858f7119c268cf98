"""Real client libraries against the emulator, through the ``dashscope_emulator`` pytest fixture.

Each client is built the way its documentation shows, with no URL, key or CA argument: the
fixture's environment and module settings are all it gets, so these tests also check the plugin.

    python -m pytest tests/clients/test_clients.py -q
"""

from __future__ import annotations

import asyncio
import base64
import struct

import pytest

MESSAGES = [{"role": "user", "content": "Why reuse connections?"}]
IMAGE = "https://example.com/cat.png"  # never fetched: the emulator makes no outside connection
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


# langchain-community warns once, on import, that it is being sunset (ChatTongyi lives there still).
COMMUNITY_SUNSET = pytest.mark.filterwarnings("ignore:`langchain-community` is being sunset:DeprecationWarning")


def _norm(v) -> float:
    return sum(x * x for x in v) ** 0.5


# ---- dashscope, module API -------------------------------------------------------------------


def test_dashscope_generation_plain_and_streamed(dashscope_emulator):
    import dashscope

    whole = dashscope.Generation.call(model="qwen-plus", messages=MESSAGES, result_format="message")
    assert whole.status_code == 200, whole.message
    text = whole.output.choices[0].message.content
    parts = [
        c.output.choices[0].message.content
        for c in dashscope.Generation.call(
            model="qwen-plus", messages=MESSAGES, result_format="message", stream=True, incremental_output=True
        )
    ]
    assert len(parts) > 1 and "".join(parts) == text
    assert dashscope_emulator.stats()["requests"] == 2


def test_dashscope_text_embedding(dashscope_emulator):
    import dashscope

    rsp = dashscope.TextEmbedding.call(
        model="text-embedding-v4", input=["connection reuse", "a cat on a mat"], dimension=256
    )
    assert rsp.status_code == 200, rsp.message
    first, second = (e["embedding"] for e in rsp.output["embeddings"])
    assert [e["text_index"] for e in rsp.output["embeddings"]] == [0, 1]
    assert len(first) == len(second) == 256
    assert _norm(first) == pytest.approx(1.0) and first != second
    assert rsp.usage["total_tokens"] == 2 + 5  # words and punctuation, the stand-in tokenizer
    again = dashscope.TextEmbedding.call(model="text-embedding-v4", input="connection reuse", dimension=256)
    assert again.output["embeddings"][0]["embedding"] == first  # same text, same vector


def test_dashscope_text_embedding_refuses_a_dimension_the_model_lacks(dashscope_emulator):
    import dashscope

    rsp = dashscope.TextEmbedding.call(model="text-embedding-v3", input="x", dimension=2048)
    assert rsp.status_code == 400 and rsp.code == "InvalidParameter"
    assert "1024, 768" in rsp.message


@pytest.mark.parametrize("image", [IMAGE, PIXEL])
def test_dashscope_multimodal_conversation(dashscope_emulator, image):
    import dashscope

    messages = [{"role": "user", "content": [{"image": image}, {"image": image}, {"text": "Compare them."}]}]
    rsp = dashscope.MultiModalConversation.call(model="qwen3-vl-plus", messages=messages)
    assert rsp.status_code == 200, rsp.message
    content = rsp.output.choices[0].message.content
    assert isinstance(content, list) and content[0]["text"].startswith("I received 2 images")
    assert rsp.usage["image_tokens"] == 512
    chunks = list(
        dashscope.MultiModalConversation.call(
            model="qwen3-vl-plus", messages=messages, stream=True, incremental_output=True
        )
    )
    assert "".join(c.output.choices[0].message.content[0]["text"] for c in chunks) == content[0]["text"]
    assert chunks[-1].output.choices[0].finish_reason == "stop"


def test_dashscope_multimodal_refuses_a_text_model_and_a_bad_image(dashscope_emulator):
    import dashscope

    text_model = dashscope.MultiModalConversation.call(
        model="qwen-plus", messages=[{"role": "user", "content": [{"image": IMAGE}, {"text": "?"}]}]
    )
    assert text_model.status_code == 400 and "does not take images" in text_model.message
    bad = dashscope.MultiModalConversation.call(
        model="qwen-vl-plus", messages=[{"role": "user", "content": [{"image": "data:image/png;base64,%%%"}]}]
    )
    assert bad.status_code == 400 and "base64" in bad.message


# ---- dashscope.Client (2.x) ------------------------------------------------------------------


def test_dashscope_client_chat_embeddings_and_stream(dashscope_emulator):
    import dashscope

    with dashscope.Client() as client:  # base URL, key and CA from the fixture's environment
        rsp = client.chat.completions.create(model="qwen-plus", messages=MESSAGES)
        # The same request through the module API gets the same deterministic reply.
        module = dashscope.Generation.call(model="qwen-plus", messages=MESSAGES, result_format="message")
        assert rsp.output_text and rsp.output_text == module.output.choices[0].message.content
        streamed = "".join(
            c.delta.content or ""
            for c in client.chat.completions.create(model="qwen-plus", messages=MESSAGES, stream=True)
            if c.delta
        )
        assert streamed == rsp.output_text
        emb = client.embeddings.create(model="text-embedding-v4", input=["reuse", "reuse"], dimension=64)
        assert len(emb.embeddings) == 2 and emb.embeddings[0].embedding == emb.embeddings[1].embedding
        assert _norm(emb.embeddings[0].embedding) == pytest.approx(1.0)
    assert dashscope_emulator.stats()["statuses"] == {"200": 4}


def test_dashscope_async_client(dashscope_emulator):
    import dashscope

    async def main():
        async with dashscope.AsyncClient() as client:
            return await client.chat.completions.create(model="qwen-turbo", messages=MESSAGES)

    assert asyncio.run(main()).output_text


# ---- openai ----------------------------------------------------------------------------------


def test_openai_chat_plain_and_streamed(dashscope_emulator):
    import openai

    with openai.OpenAI() as client:  # OPENAI_BASE_URL / OPENAI_API_KEY from the fixture
        whole = client.chat.completions.create(model="qwen-plus", messages=MESSAGES)
        text = whole.choices[0].message.content
        stream = client.chat.completions.create(model="qwen-plus", messages=MESSAGES, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text


def test_openai_embeddings_float_and_base64_agree(dashscope_emulator):
    import openai

    with openai.OpenAI() as client:
        # The SDK asks for base64 unless told otherwise, and decodes it.
        default = client.embeddings.create(model="text-embedding-v3", input=["reuse", "pool"], dimensions=128)
        floats = client.embeddings.create(
            model="text-embedding-v3", input=["reuse", "pool"], dimensions=128, encoding_format="float"
        )
        raw = client.embeddings.with_raw_response.create(
            model="text-embedding-v3", input="reuse", dimensions=128, encoding_format="base64"
        ).http_response.json()
    assert [d.index for d in default.data] == [0, 1]
    assert len(default.data[0].embedding) == 128
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    decoded = struct.unpack("<128f", base64.b64decode(raw["data"][0]["embedding"]))
    assert list(decoded) == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 2


def test_openai_embeddings_errors(dashscope_emulator):
    import openai

    with openai.OpenAI(max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as info:
            client.embeddings.create(model="text-embedding-v4", input="x", dimensions=100)
        assert "dimensions must be one of" in str(info.value)
        with pytest.raises(openai.BadRequestError) as info:
            client.embeddings.create(model="text-embedding-v1", input="x")  # native only
        assert "text-embedding-v4" in str(info.value)
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model="text-embedding-v4", input=[f"t{i}" for i in range(11)])


def test_openai_chat_with_an_image(dashscope_emulator):
    import openai

    content = [{"type": "image_url", "image_url": {"url": PIXEL}}, {"type": "text", "text": "What is it?"}]
    with openai.OpenAI() as client:
        rsp = client.chat.completions.create(model="qwen-vl-max", messages=[{"role": "user", "content": content}])
    assert rsp.choices[0].message.content and rsp.choices[0].finish_reason == "stop"


# ---- LangChain ---------------------------------------------------------------------------------


@COMMUNITY_SUNSET
def test_langchain_chat_tongyi_plain_and_streamed(dashscope_emulator):
    from langchain_community.chat_models import ChatTongyi

    llm = ChatTongyi(model="qwen-plus")  # DASHSCOPE_API_KEY and the module's base URL from the fixture
    whole = llm.invoke("Why reuse connections?")
    assert whole.content
    # ChatTongyi streams only when built with streaming=True: its validator fills in every field,
    # streaming=False among them, and langchain-core reads a set False as "never stream".
    streaming = ChatTongyi(model="qwen-plus", streaming=True)
    chunks = list(streaming.stream("Why reuse connections?"))
    assert len(chunks) > 1 and "".join(c.content for c in chunks) == whole.content


def test_langchain_chat_openai_plain_and_streamed(dashscope_emulator):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="qwen-plus")  # OPENAI_BASE_URL / OPENAI_API_KEY from the fixture
    whole = llm.invoke("Why reuse connections?")
    assert whole.content and whole.usage_metadata["output_tokens"] > 0
    chunks = list(llm.stream("Why reuse connections?"))
    assert "".join(c.content for c in chunks) == whole.content


@COMMUNITY_SUNSET
def test_langchain_dashscope_embeddings(dashscope_emulator):
    from langchain_community.embeddings import DashScopeEmbeddings

    emb = DashScopeEmbeddings(model="text-embedding-v4")
    docs = emb.embed_documents(["pooled connections are reused", "a cat sat on the mat"])
    query = emb.embed_query("are connections reused?")

    def dot(a, b):
        return sum(x * y for x, y in zip(a, b))

    # Shared words point the same way: retrieval code can be tested offline.
    assert dot(query, docs[0]) > dot(query, docs[1])


@COMMUNITY_SUNSET
def test_langchain_chat_tongyi_vision_model(dashscope_emulator):
    from langchain_community.chat_models import ChatTongyi
    from langchain_core.messages import HumanMessage

    llm = ChatTongyi(model="qwen-vl-plus")  # a vision model: ChatTongyi calls MultiModalConversation
    reply = llm.invoke([HumanMessage(content=[{"image": IMAGE}, {"text": "What is in the picture?"}])])
    text = reply.content if isinstance(reply.content, str) else reply.content[0]["text"]
    assert text.startswith("I received 1 image")


def test_langchain_chat_openai_image_url(dashscope_emulator):
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    content = [{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": PIXEL}}]
    reply = ChatOpenAI(model="qwen3-vl-flash").invoke([HumanMessage(content=content)])
    assert reply.content
