"""OpenAI-compatible routes: /v1/models, /v1/completions, /v1/chat/completions.

Each request becomes engine sampling params (OpenAI names mapped to the engine's); chat
messages go through the model's own chat template. Streaming with n > 1 (or several prompts)
runs one engine stream per choice and merges them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from . import openai_format as fmt
from .bridge import ClientGone
from .context import ServerContext
from .errors import APIError, error_body
from .guard import parse
from .jsonio import JSONOut
from .native import SSE_DONE, engine_errors, sse
from .openai_chat_output import DeltaSplitter, split_message
from .openai_media import ChatMedia, message_text
from .openai_protocol import ChatCompletionRequest, CompletionRequest, SamplingFields
from .openai_reasoning import ReasoningParser, get_reasoning_parser
from .openai_tool_constraint import single_token_id
from .openai_tool_parsers import ToolParser, detect_parser, get_parser
from .openai_tools import ToolPlan, chat_messages, plan_tools
from .protocol import check_top_logprobs, clean_sampling_params
from .task_check import require_generation

# OpenAI field -> engine sampling field
_FIELDS = {"temperature": "temperature", "top_p": "top_p", "stop": "stop", "seed": "seed",
           "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
           "top_k": "top_k", "min_p": "min_p", "repetition_penalty": "repetition_penalty",
           "min_tokens": "min_new_tokens", "ignore_eos": "ignore_eos", "skip_special_tokens": "skip_special_tokens",
           "stop_token_ids": "stop_token_ids", "stop_regex": "stop_regex", "no_stop_trim": "no_stop_trim", "regex": "regex",
           "json_schema": "json_schema", "ebnf": "ebnf", "token_healing": "token_healing"}
_RENAMES = (("sampling_params.max_new_tokens", "max_tokens"), ("sampling_params.min_new_tokens", "min_tokens"),
            ("sampling_params.", ""))
JSON_OBJECT_SCHEMA = {"type": "object"}


@contextmanager
def openai_errors() -> Iterator[None]:
    """engine_errors, with the engine's field names turned into OpenAI's."""
    try:
        with engine_errors():
            yield
    except APIError as e:
        message, param = e.message, e.param
        for old, new in _RENAMES:
            message = message.replace(old, new)
            param = param.replace(old, new) if param else param
        raise APIError(e.status, message, param) from None


def sampling_params(req: SamplingFields, max_tokens: int | None, ctx: ServerContext,
                    tool_constraint: tuple[str, str] | None = None,
                    reasoning: ReasoningParser | None = None) -> dict[str, Any]:
    """``tool_constraint``: (sampling field, text) of tool_choice "required" / a named function;
    with a ``reasoning`` parser a regex or JSON-schema constraint applies after the thinking."""
    sp: dict[str, Any] = {"n": req.n}
    given = [name for name, v in (("regex", req.regex), ("json_schema", req.json_schema), ("ebnf", req.ebnf),
                                  ("response_format", req.response_format if req.response_format is not None
                                   and req.response_format.type != "text" else None),
                                  ("tool_choice", tool_constraint)) if v is not None]
    if len(given) > 1:
        raise APIError(400, f"{' and '.join(f'`{g}`' for g in given)} each constrain the output: give only one",
                       given[1])
    if max_tokens is not None:
        sp["max_new_tokens"] = max_tokens
    for src, dst in _FIELDS.items():
        value = getattr(req, src)
        if value is not None:
            sp[dst] = value
    if req.logit_bias:
        try:
            sp["logit_bias"] = {int(k): v for k, v in req.logit_bias.items()}
        except ValueError:
            raise APIError(400, "`logit_bias` keys must be token ids (integers, as JSON strings)", "logit_bias") from None
    fmt_ = req.response_format
    if fmt_ is not None and fmt_.type == "structural_tag":
        if not fmt_.structures or not fmt_.triggers:
            raise APIError(400, "`response_format` of type structural_tag needs `structures` and `triggers`",
                           "response_format.structures")
        sp["structural_tag"] = json.dumps({"structures": fmt_.structures, "triggers": fmt_.triggers})
    elif fmt_ is not None and fmt_.type != "text":
        if fmt_.type == "json_object":
            schema: Any = JSON_OBJECT_SCHEMA
        elif fmt_.json_schema is None or fmt_.json_schema.schema_ is None:
            raise APIError(400, "`response_format.json_schema.schema` is required with type json_schema",
                           "response_format.json_schema.schema")
        else:
            schema = fmt_.json_schema.schema_
        sp["json_schema"] = json.dumps(schema)
    if tool_constraint is not None:
        sp[tool_constraint[0]] = tool_constraint[1]
    if reasoning is not None:
        _constrain_after_thinking(sp, reasoning)
    with openai_errors():
        return clean_sampling_params(sp, ctx.engine)


def _constrain_after_thinking(sp: dict[str, Any], reasoning: ReasoningParser) -> None:
    """The output's constraint moves past the thinking: a regex of free thinking then the
    constraint (a JSON schema becomes its regex, our own JSON path either way)."""
    from ..constrained import schema_to_regex
    from ..constrained.errors import ConstraintError

    kind = next((k for k in ("regex", "json_schema") if k in sp), None)
    if kind is None:
        return
    try:
        inner = sp[kind] if kind == "regex" else schema_to_regex(json.loads(sp[kind]))
    except ConstraintError as e:
        raise APIError(400, f"`{kind}`: {e}", kind) from None
    combined = reasoning.constrain_after(inner)
    if combined is not None:
        del sp[kind]
        sp["regex"] = combined


def render_chat(engine: Any, req: ChatCompletionRequest, tools: list[dict[str, Any]] | None = None,
                media: ChatMedia | None = None) -> list[int]:
    """Token ids of the chat template applied to the messages (and ``tools``), with the
    generation prompt; image and video parts become the model's placeholders, their URLs go
    into `media`."""
    tokenizer = engine.tokenizer
    media = media if media is not None else ChatMedia()
    messages = []
    for i, m in enumerate(req.messages):
        msg: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role,
                               "content": message_text(m, i, engine, media)}
        if m.tool_calls:
            msg["tool_calls"] = m.tool_calls
        if m.tool_call_id is not None:
            msg["tool_call_id"] = m.tool_call_id
        messages.append(msg)
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise APIError(400, "the model has no chat template; use /v1/completions with a plain prompt", "messages")
    messages, extra = chat_messages(messages, tools or [], template if isinstance(template, str) else str(template))
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)
    except Exception as e:  # the template rejects the conversation (e.g. roles must alternate)
        raise APIError(400, f"`messages`: the chat template rejected them: {e}", "messages") from None
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def openai_router(ctx: ServerContext) -> APIRouter:
    router = APIRouter()
    engine, bridge, limit = ctx.engine, ctx.bridge, ctx.settings.max_body_bytes
    started = int(time.time())

    @router.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": ctx.model_name, "object": "model", "created": started,
                                            "owned_by": "sgl", "root": str(engine.model_path),
                                            "max_model_len": engine.context_length}]}

    @router.post("/v1/completions")
    async def completions(request: Request) -> Response:
        req = await parse(request, CompletionRequest, limit)
        require_generation(engine, "/v1/completions")
        if req.suffix:
            raise APIError(400, "`suffix` is not supported: put the whole text in `prompt`", "suffix")
        if req.best_of is not None and req.best_of != req.n:
            raise APIError(400, "`best_of` must equal `n` (or be left out)", "best_of")
        prompts = _prompt_inputs(req.prompt)
        sp = sampling_params(req, req.max_tokens, ctx)
        lp = _logprob_kwargs(req.logprobs is not None, req.logprobs or 0, ctx)
        base = {"id": "cmpl-" + uuid.uuid4().hex, "object": "text_completion", "created": int(time.time()),
                "model": ctx.model_name}
        if req.stream:
            streams = await _open_streams(ctx, prompts, sp, lp)
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(_completion_stream(ctx, streams, base, req.logprobs is not None, include_usage, req.n),
                                     media_type="text/event-stream")
        results = await _generate(request, ctx, prompts, sp, lp)
        if results is None:
            return Response(status_code=499)
        echo = [_prompt_text(engine, p) for p in prompts] if req.echo else None
        choices = [fmt.completion_choice(i, (echo[i // req.n] if echo else "") + r["text"], r["meta_info"],
                                         req.logprobs is not None)
                   for i, r in enumerate(results)]
        return JSONOut({**base, "choices": choices, "usage": fmt.usage(results, req.n)})

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        req = await parse(request, ChatCompletionRequest, limit)
        require_generation(engine, "/v1/chat/completions")
        if req.top_logprobs and not req.logprobs:
            raise APIError(400, "`top_logprobs` needs `logprobs: true`", "top_logprobs")
        parser = tool_parser(ctx)
        plan: ToolPlan = await bridge.call(plan_tools, req.tools, req.tool_choice, req.parallel_tool_calls, parser,
                                           single_token_id(engine.tokenizer))
        reasoning = reasoning_parser(ctx) if req.separate_reasoning else None
        media = ChatMedia()
        ids = await bridge.call(render_chat, engine, req, plan.tools, media)
        max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        if max_tokens is None:  # OpenAI's default: up to the end of the context
            max_tokens = max(engine.context_length - len(ids), 0)
        sp = sampling_params(req, max_tokens, ctx, plan.constraint, reasoning)
        if plan.parse and parser.needs_special_tokens:
            sp.setdefault("skip_special_tokens", False)
        tools = parser if plan.parse else None
        lp = _logprob_kwargs(req.logprobs, req.top_logprobs or 0, ctx)
        prompts: list[dict[str, Any]] = [{"input_ids": ids}]
        if media.images:
            prompts[0]["image_data"] = media.images
        if media.videos:
            prompts[0]["video_data"] = media.videos
        if media.audios:
            prompts[0]["audio_data"] = media.audios
        base = {"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion", "created": int(time.time()),
                "model": ctx.model_name}
        if req.stream:
            streams = await _open_streams(ctx, prompts, sp, lp)
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            chunk_base = {**base, "object": "chat.completion.chunk"}
            return StreamingResponse(_chat_stream(ctx, streams, chunk_base, req.logprobs, include_usage, req.n,
                                                  tools, reasoning), media_type="text/event-stream")
        results = await _generate(request, ctx, prompts, sp, lp)
        if results is None:
            return Response(status_code=499)
        choices = [_chat_choice(i, r, req.logprobs, tools, reasoning) for i, r in enumerate(results)]
        return JSONOut({**base, "choices": choices, "usage": fmt.usage(results, req.n)})

    return router


def tool_parser(ctx: ServerContext) -> ToolParser:
    name = ctx.settings.tool_call_parser
    if name is not None:
        return get_parser(name)
    template = getattr(ctx.engine.tokenizer, "chat_template", None)
    return detect_parser(template if isinstance(template, str) else None,
                         getattr(ctx.engine.model_config, "model_type", "") or "")


def reasoning_parser(ctx: ServerContext) -> ReasoningParser | None:
    name = ctx.settings.reasoning_parser
    return get_reasoning_parser(name) if name is not None else None


def _chat_choice(i: int, r: dict[str, Any], with_logprobs: bool, tools: ToolParser | None,
                 reasoning: ReasoningParser | None) -> dict[str, Any]:
    choice = fmt.chat_choice(i, r, with_logprobs)
    if tools is None and reasoning is None:
        return choice
    choice["message"], has_calls = split_message(r["text"], tools, reasoning)
    if has_calls and choice["finish_reason"] == "stop":
        choice["finish_reason"] = "tool_calls"
    return choice


def _prompt_inputs(prompt: Any) -> list[dict[str, Any]]:
    """One engine input per prompt: {"prompt": str} or {"input_ids": [...]}."""
    if isinstance(prompt, str):
        return [{"prompt": prompt}]
    if not prompt:
        raise APIError(400, "`prompt` is empty: give a string, a list of strings or token ids", "prompt")
    if all(isinstance(p, str) for p in prompt):
        return [{"prompt": p} for p in prompt]
    if all(isinstance(p, int) for p in prompt):
        return [{"input_ids": prompt}]
    return [{"input_ids": p} for p in prompt]


def _prompt_text(engine: Any, p: dict[str, Any]) -> str:
    return p["prompt"] if "prompt" in p else engine.tokenizer.decode(p["input_ids"])


def _logprob_kwargs(wanted: bool, top: int, ctx: ServerContext) -> dict[str, Any]:
    if not wanted:
        return {}
    check_top_logprobs(top, ctx.engine, "top_logprobs")
    # logprob_start_len=-1: no prompt rows, only the output's
    return {"return_logprob": True, "top_logprobs_num": top, "return_text_in_logprobs": True, "logprob_start_len": -1}


async def _generate(request: Request, ctx: ServerContext, prompts: list[dict[str, Any]], sp: dict[str, Any],
                    lp: dict[str, Any]) -> list[dict[str, Any]] | None:
    """All choices, n per prompt in prompt order; None when the client went away."""
    rids = [uuid.uuid4().hex for _ in prompts]
    key = "prompt" if "prompt" in prompts[0] else "input_ids"
    inputs = [p[key] for p in prompts]
    media = {k: [p.get(k) for p in prompts] for k in ("image_data", "video_data", "audio_data")
             if any(k in p for p in prompts)}
    with openai_errors():
        try:
            out = await ctx.bridge.generate(request, rids, **{key: inputs}, sampling_params=sp, rid=rids, **lp, **media)
        except ClientGone:
            return None
    return out if isinstance(out, list) else [out]


async def _open_streams(ctx: ServerContext, prompts: list[dict[str, Any]], sp: dict[str, Any],
                        lp: dict[str, Any]) -> list[tuple[str, Iterator[dict]]]:
    """n engine streams per prompt (the engine streams one choice each), all validated first."""
    n, seed = sp["n"], sp.get("seed")
    streams = []
    for p in prompts:
        for j in range(n):
            one = {**sp, "n": 1}
            if seed is not None:
                one["seed"] = seed + j
            rid = uuid.uuid4().hex
            with openai_errors():
                streams.append((rid, await ctx.bridge.open_stream(rid, **p, sampling_params=one, **lp)))
    return streams


async def _chat_stream(ctx: ServerContext, streams: list[tuple[str, Iterator[dict]]], base: dict[str, Any],
                       with_logprobs: bool, include_usage: bool, n: int, tools: ToolParser | None = None,
                       reasoning: ReasoningParser | None = None) -> AsyncIterator[str]:
    sent = [""] * len(streams)
    rows_sent = [0] * len(streams)
    finals: list[dict[str, Any]] = [{}] * len(streams)
    splitters = [DeltaSplitter(tools, reasoning) if tools or reasoning else None for _ in streams]
    for i in range(len(streams)):
        yield sse({**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                        "logprobs": None, "finish_reason": None}]})
    try:
        async for i, chunk in ctx.bridge.merge_streams(streams):
            meta, text = chunk["meta_info"], chunk["text"]
            piece, sent[i] = text[len(sent[i]):], text
            logprobs = None
            if with_logprobs:
                logprobs = fmt.chat_logprobs(meta, rows_sent[i])
                rows_sent[i] = len(meta.get("output_token_logprobs", []))
            reason = fmt.finish_reason(meta)
            splitter = splitters[i]
            if splitter is not None:  # reasoning / tool calls: their deltas first, the finish last
                for delta in splitter.feed(text, final=reason is not None):
                    yield sse({**base, "choices": [{"index": i, "delta": delta, "logprobs": None,
                                                    "finish_reason": None}]})
                piece = ""
                if reason == "stop" and splitter.has_calls:
                    reason = "tool_calls"
            if piece or reason or (logprobs and logprobs["content"]):
                choice = {"index": i, "delta": {"content": piece} if piece else {}, "logprobs": logprobs,
                          "finish_reason": reason}
                if reason:
                    choice["matched_stop"] = fmt.matched_stop(meta)
                    finals[i] = chunk
                yield sse({**base, "choices": [choice]})
        if include_usage:
            yield sse({**base, "choices": [], "usage": fmt.usage(finals, n)})
    except Exception as e:  # the engine failed mid-stream: tell the client, then end the stream
        yield sse(error_body(500, f"generation failed: {type(e).__name__}: {e}"))
    yield SSE_DONE


async def _completion_stream(ctx: ServerContext, streams: list[tuple[str, Iterator[dict]]], base: dict[str, Any],
                             with_logprobs: bool, include_usage: bool, n: int) -> AsyncIterator[str]:
    sent = [""] * len(streams)
    rows_sent = [0] * len(streams)
    finals: list[dict[str, Any]] = [{}] * len(streams)
    try:
        async for i, chunk in ctx.bridge.merge_streams(streams):
            meta, text = chunk["meta_info"], chunk["text"]
            piece, offset, sent[i] = text[len(sent[i]):], len(sent[i]), text
            logprobs = None
            if with_logprobs:
                logprobs = fmt.completion_logprobs(meta, rows_sent[i], offset)
                rows_sent[i] = len(meta.get("output_token_logprobs", []))
            reason = fmt.finish_reason(meta)
            if piece or reason or (logprobs and logprobs["tokens"]):
                if reason:
                    finals[i] = chunk
                yield sse({**base, "choices": [{"index": i, "text": piece, "logprobs": logprobs,
                                                "finish_reason": reason}]})
        if include_usage:
            yield sse({**base, "choices": [], "usage": fmt.usage(finals, n)})
    except Exception as e:
        yield sse(error_body(500, f"generation failed: {type(e).__name__}: {e}"))
    yield SSE_DONE
