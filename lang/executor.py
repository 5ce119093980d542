"""StreamExecutor: executes one program state's expressions, in order, on its own thread.

The program's Python code submits expressions (``s += ...``) and goes on; the worker thread
runs them against the backend. Reads (``s["x"]``, ``text()``) block until the value exists.
When an expression fails, the worker stops, records the error and the expression, drops the
rest of the queue and releases every waiting reader.

NOTE (threading): ``cond`` guards ``text_``, ``variables`` and ``meta_info`` writes made by the
worker and is notified after each change, so stream readers never miss a piece.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import uuid
import warnings
from typing import Any

from sgl.chat_template import ChatTemplate
from sgl.global_config import global_config
from sgl.ir import (
    CommitLazy,
    ConcateAndAppend,
    ConstantText,
    Expr,
    Gen,
    Image,
    RoleBegin,
    RoleEnd,
    SamplingParams,
    Select,
    SeparateReasoning,
    VarScopeBegin,
    VarScopeEnd,
    Video,
    as_expr,
    describe,
    iter_leaves,
)
from sgl.media import LoadedVideo, load_image, load_video
from sgl.reasoning_split import separate_reasoning
from sgl.stream_meta import accumulate


class StreamExecutor:
    def __init__(
        self,
        backend: Any,
        arguments: dict[str, Any],
        default_sampling: SamplingParams,
        chat_template: ChatTemplate | None = None,
        stream: bool = False,
        use_thread: bool = True,
    ) -> None:
        self.sid = uuid.uuid4().hex
        self.backend = backend
        self.arguments = arguments
        self.default_sampling = default_sampling
        self.stream = stream
        self.chat_template = chat_template or backend.get_chat_template()

        self.text_ = ""
        self.variables: dict[str, Any] = {}
        self.variable_event: dict[str, threading.Event] = {}
        self.meta_info: dict[str, Any] = {}
        # (piece, chunk meta_info) of each streamed gen, in order: what text_async_iter's
        # return_meta_data yields; meta_info[name] meanwhile folds them (sgl.stream_meta)
        self.stream_chunks: dict[str, list[tuple[str, Any]]] = {}
        self.messages_: list[dict[str, Any]] = []
        self.spans: dict[str, tuple[int, int]] = {}  # gen/select name -> its text's [start, end) in text_
        self.cur_role: str | None = None
        self.cur_role_begin_pos: int | None = None
        self.images_: list[tuple[str, Any]] = []  # (content hash, image) of the whole state
        self.cur_images: list[tuple[str, Any]] = []  # images of the current role
        self.fork_start_text_pos: int | None = None

        self.error_: BaseException | None = None
        self.failed_expr: str | None = None
        self.is_finished = False
        self.cond = threading.Condition()

        self.use_thread = use_thread
        self._ended = False
        if use_thread:
            self.queue: queue.Queue[Expr | None] = queue.Queue()
            ctx = contextvars.copy_context()
            self.worker = threading.Thread(target=ctx.run, args=(self._worker,), daemon=True)
            self.worker.start()

    # ---- submission (program thread) ------------------------------------------------------

    def submit(self, expr: object) -> None:
        expr = as_expr(expr)
        for leaf in iter_leaves(expr):
            name = getattr(leaf, "name", None)
            if isinstance(leaf, (Gen, Select, VarScopeBegin)) and name is not None:
                self.variable_event[name] = threading.Event()
            elif isinstance(leaf, SeparateReasoning):
                for reasoning in leaf.reasoning_names:
                    self.variable_event[reasoning] = threading.Event()
        if self.use_thread:
            self.queue.put(expr)
        else:
            self._run_one(expr)
            if self.error_ is not None:
                self._release_readers()

    def sync(self) -> None:
        if self.use_thread:
            self.queue.join()

    def end(self) -> None:
        """No more expressions will come: let the worker finish (idempotent)."""
        if self._ended:
            return
        self._ended = True
        if self.use_thread:
            self.queue.put(None)
        else:
            self._finish()
        self.backend.end_program(self)

    # ---- reads -----------------------------------------------------------------------------

    def text(self) -> str:
        self.sync()
        return self.text_

    def messages(self) -> list[dict[str, Any]]:
        self.sync()
        return self.messages_

    def error(self) -> BaseException | None:
        self.sync()
        return self.error_

    def get_var(self, name: str) -> Any:
        event = self.variable_event.get(name)
        if event is not None:
            event.wait()
        if name in self.variables:
            return self.variables[name]
        if self.error_ is not None:
            raise KeyError(
                f"variable {name!r} was never set: the program failed at {self.failed_expr}: "
                f"{type(self.error_).__name__}: {self.error_}"
            )
        raise KeyError(f"no variable {name!r} in this program state; it has {sorted(map(str, self.variables))}")

    def set_var(self, name: str, value: Any) -> None:
        self.variables[name] = value

    def get_meta_info(self, name: str) -> Any:
        event = self.variable_event.get(name)
        if event is not None:
            event.wait()
        return self.meta_info.get(name)

    # ---- fork ------------------------------------------------------------------------------

    def fork(self, size: int) -> list[StreamExecutor]:
        size = int(size)
        if size < 1:
            raise ValueError(f"fork(size) needs size >= 1, got {size}")
        self.sync()
        if size > 1 and self.text_ and self.error_ is None:
            # commit the shared prefix once so the children hit the cache instead of each
            # prefilling it (a copy() of one has nothing to share)
            self.submit(CommitLazy())
            self.sync()
        children = []
        for _ in range(size):
            child = StreamExecutor(
                self.backend, self.arguments, self.default_sampling, self.chat_template, self.stream
            )
            child.variables = dict(self.variables)
            child.meta_info = dict(self.meta_info)
            child.text_ = self.text_
            child.messages_ = list(self.messages_)
            child.cur_role = self.cur_role
            child.cur_role_begin_pos = self.cur_role_begin_pos
            child.fork_start_text_pos = len(self.text_)
            child.images_ = list(self.images_)
            child.spans = dict(self.spans)
            child.cur_images = list(self.cur_images)
            children.append(child)
        return children

    # ---- worker ----------------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            expr = self.queue.get()
            if expr is None:
                self.queue.task_done()
                break
            failed = self._run_one(expr)
            self.queue.task_done()
            if failed:
                # release readers, then drop everything submitted until end(), releasing the
                # readers of what is dropped too (it may have been submitted after the release)
                self._release_readers()
                while self.queue.get() is not None:
                    self._release_readers()
                    self.queue.task_done()
                self.queue.task_done()
                break
        self._finish()

    def _run_one(self, expr: Expr) -> bool:
        """Execute one expression; on failure record it and return True."""
        try:
            self._execute(expr)
            return False
        except Exception as e:  # captured per program, reported by s.error()
            if global_config.verbosity >= 1:
                warnings.warn(f"error in program {self.sid}: {e!r}", stacklevel=1)
            self.error_ = e
            self.failed_expr = getattr(e, "_sgl_expr", None) or describe(expr)
            return True

    def _release_readers(self) -> None:
        with self.cond:
            for event in list(self.variable_event.values()):
                event.set()
            self.cond.notify_all()

    def _finish(self) -> None:
        with self.cond:
            self.is_finished = True
            self.cond.notify_all()
        if global_config.verbosity >= 2:
            print(self.text_)

    # ---- execution -------------------------------------------------------------------------

    def _execute(self, expr: Expr) -> None:
        for leaf in iter_leaves(expr):
            try:
                self._execute_leaf(leaf)
            except Exception as e:
                if not hasattr(e, "_sgl_expr"):
                    e._sgl_expr = describe(leaf)  # type: ignore[attr-defined]
                raise

    def _execute_leaf(self, expr: Expr) -> None:
        if isinstance(expr, ConstantText):
            self._fill(expr.value)
        elif isinstance(expr, Gen):
            self._gen(expr)
        elif isinstance(expr, Select):
            self._select(expr)
        elif isinstance(expr, RoleBegin):
            self._role_begin(expr.role)
        elif isinstance(expr, RoleEnd):
            self._role_end(expr.role)
        elif isinstance(expr, VarScopeBegin):
            self.variables[expr.name] = len(self.text_)
        elif isinstance(expr, VarScopeEnd):
            begin = self.variables[expr.name]
            self._set_var(expr.name, self.text_[begin:], None)
        elif isinstance(expr, (Image, Video)):
            self._media(expr)
        elif isinstance(expr, SeparateReasoning):
            self._separate_reasoning(expr)
        elif isinstance(expr, CommitLazy):
            self.backend.commit_lazy_operations(self)
        elif isinstance(expr, ConcateAndAppend):
            self._concate_and_append(expr)
        else:
            raise TypeError(f"{describe(expr)} cannot be executed (is it a tracing placeholder?)")

    def _fill(self, value: str) -> None:
        with self.cond:
            self.text_ += value
            self.cond.notify_all()

    def _set_var(self, name: str | None, value: Any, meta: Any) -> None:
        if name is None:
            return
        with self.cond:
            self.variables[name] = value
            self.meta_info[name] = meta
            self.variable_event[name].set()
            self.cond.notify_all()

    def resolve_sampling(self, sampling: SamplingParams) -> SamplingParams:
        """The run's defaults, overridden by the gen's own values, plus template stops."""
        params = self.default_sampling.override(sampling)
        return params.with_extra_stop(self.chat_template.stop_str)

    def _gen(self, expr: Gen) -> None:
        params = self.resolve_sampling(expr.sampling)
        start = len(self.text_)
        if not self.stream:
            comp, meta = self.backend.generate(self, sampling_params=params)
            self._fill(comp[0] if isinstance(comp, list) else comp)
            self._set_span(expr.name, start)
            self._set_var(expr.name, comp, meta)
            return
        name = expr.name
        with self.cond:
            if name is not None:
                self.variables[name] = ""
                self.meta_info[name] = None
                self.stream_chunks[name] = []
        try:
            for piece, meta in self.backend.generate_stream(self, sampling_params=params):
                with self.cond:
                    self.text_ += piece
                    if name is not None:
                        self.variables[name] += piece
                        # NOTE: chunks carry only their new logprob rows; the variable's meta_info
                        # folds them, so after the stream it equals the non-streamed one
                        self.meta_info[name] = accumulate(self.meta_info[name], meta)
                        self.stream_chunks[name].append((piece, meta))
                    self.cond.notify_all()
        except Exception:
            # NOTE: a half-streamed value is not a value; reads must raise like any failed gen
            self.variables.pop(name, None)
            raise
        if name is not None:
            self._set_span(name, start)
            self._set_var(name, self.variables[name], self.meta_info.get(name))

    def _set_span(self, name: str | None, start: int) -> None:
        if name is not None:
            self.spans[name] = (start, len(self.text_))

    def _separate_reasoning(self, expr: SeparateReasoning) -> None:
        separate_reasoning(self, expr)

    def _select(self, expr: Select) -> None:
        decision = self.backend.select(self, expr.choices, expr.temperature, expr.choices_method)
        start = len(self.text_)
        self._fill(decision.decision)
        self._set_span(expr.name, start)
        self._set_var(expr.name, decision.decision, decision.meta_info)

    def _role_begin(self, role: str) -> None:
        if self.cur_role is not None:
            raise ValueError(f"role {role!r} begins inside role {self.cur_role!r}; roles cannot nest")
        if not self.messages_ and role != "system" and self.chat_template.default_system_prompt:
            self._role_begin("system")
            self._fill(self.chat_template.default_system_prompt)
            self._role_end("system")
        self.cur_role = role
        prefix, _ = self.chat_template.get_prefix_and_suffix(role, self.messages_)
        self._fill(prefix)
        self.cur_role_begin_pos = len(self.text_)

    def _role_end(self, role: str) -> None:
        if self.cur_role != role:
            raise ValueError(f"role {role!r} ends but the open role is {self.cur_role!r}")
        content = self.text_[self.cur_role_begin_pos :].lstrip()
        _, suffix = self.chat_template.get_prefix_and_suffix(role, self.messages_)
        self._fill(suffix)
        if self.cur_images:
            # OpenAI vision form
            parts: list[dict[str, Any]] = [{"type": "text", "text": content}]
            for _, item in self.cur_images:
                for img in item.frames if isinstance(item, LoadedVideo) else (item,):
                    parts.append({"type": "image_url", "image_url": {"url": img.data_uri()}})
            self.messages_.append({"role": role, "content": parts})
            self.cur_images = []
        else:
            self.messages_.append({"role": role, "content": content})
        self.cur_role = None

    def _media(self, expr: Image | Video) -> None:
        if not self.backend.is_multimodal:
            raise ValueError(
                f"{describe(expr)}: the backend's model is not multimodal; use a vision-language "
                "model (e.g. a Qwen2-VL or LLaVA checkpoint) to append images or video"
            )
        # a video is one entry at one image token, as SGLang's frontend sends it (its frames as
        # a "video:" payload; the engine gives it the model's video placeholder)
        item = load_image(expr.source) if isinstance(expr, Image) else load_video(expr.path, expr.num_frames)
        self.images_.append((item.content_hash, item))
        self.cur_images.append((item.content_hash, item))
        self._fill(self.chat_template.image_token)

    def _concate_and_append(self, expr: ConcateAndAppend) -> None:
        if global_config.enable_parallel_encoding and self.backend.support_concate_and_append:
            self.backend.concatenate_and_append([s.stream_executor for s in expr.states], self)
            return
        new_text = ""
        for st in expr.states:
            child = st.stream_executor
            child.sync()
            new_text += child.text_[child.fork_start_text_pos :]
        self._fill(new_text)
