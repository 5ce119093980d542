"""Engine: the public API of the embedded inference engine.

Callers on any thread submit requests; one scheduler thread batches them (so concurrent callers
are served together), runs the model and hands results back through per-request queues.

NOTE (no caller waits for ever): a step that raises ends the requests it touched with an abort
naming the error (Scheduler.fail_step) and the engine keeps serving; if the scheduler thread
itself dies, every request not yet answered gets that error, later calls raise, and waiting
callers poll the thread's liveness as a last resort.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import torch

from .cache import KVPool, RadixCache, ReqToTokenTable, SlotAllocator
from .config import EngineConfig, pick_device
from .engine_async import AsyncAPI
from .engine_pooling import PoolingAPI
from .engine_scoring import LabelScoringAPI
from .info import modalities, server_info
from .loader import load_model
from .loader.quantize import weight_bytes
from .memory import choose_num_slots
from .model_runner import ModelRunner
from .multimodal.processor import MediaProcessor, expand_prompts
from .openmp import release_thread_pool
from .requests import RequestFactory
from .results import build_result
from .scheduler.kv_manager import KVManager
from .scheduler.postprocess import finish_error
from .scheduler.request import Req
from .scheduler.scheduler import Scheduler

logger = logging.getLogger("sgl.runtime")
_DONE = object()
POLL_S = 1.0  # how often a waiting caller checks that the scheduler thread is alive


class Engine(AsyncAPI, PoolingAPI, LabelScoringAPI):
    """Loads a model and serves generate requests with continuous batching and a radix cache;
    a pooling model (embedding, classification, reward, rerank) serves encode, classify, score
    and rerank instead (engine_pooling.py); async_generate / async_stream are in engine_async.py.

    >>> engine = Engine()  # the default model
    >>> engine.generate("The capital of France is", {"max_new_tokens": 8, "temperature": 0})["text"]
    """

    def __init__(self, model_path: str | None = None, **engine_args: Any) -> None:
        self.config = cfg = EngineConfig(model_path=model_path, **engine_args)
        self.device = pick_device(cfg.device)
        if cfg.node_rank != 0:
            raise ValueError(f"node_rank={cfg.node_rank}: only node 0 runs the engine; start the other nodes "
                             "with `sgl serve --node-rank R` (they serve no HTTP)")
        self._tp = None
        if cfg.tp_size > 1:  # rank 0 of the tensor-parallel group: distributed/worker.py
            from .distributed.worker import start_rank0

            self._tp = start_rank0(cfg)
        try:
            runner = self._load(cfg)
        except BaseException:
            if self._tp is not None:
                self._tp.close()
            raise
        self._compiler_lock = threading.Lock()
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._submit_lock = threading.Lock()  # orders submissions against the thread's death
        self._unanswered: dict[int, Req] = {}  # id -> submitted request without its final result
        self._dead: str | None = None  # why the scheduler thread ended, once it has
        self._stopped = False
        self.task = runner.task  # generate | embed | classify: what the model's head gives
        self._scheduler = Scheduler(cfg, self._kv, runner, self.context_length, self._on_update,
                                    torch.Generator().manual_seed(cfg.random_seed))
        self._thread = threading.Thread(target=self._loop, name="sgl-scheduler", daemon=True)
        self._thread.start()
        # an engine never shut down stops at exit: its thread frozen mid-call while the process
        # tore down under it aborted the interpreter now and then ("terminate called ...", rc 134)
        atexit.register(self.shutdown)
        release_thread_pool()  # the model runs on the scheduler thread: see openmp.py

    def _load(self, cfg: EngineConfig) -> ModelRunner:
        """The model (this rank's shards under TP), its KV pool, the cache and the runner."""
        loaded = load_model(cfg, self.device, tp_group=None if self._tp is None else self._tp.group)
        self.model_path, self.model_config, self.tokenizer = loaded.model_path, loaded.config, loaded.tokenizer
        self.dtype = loaded.dtype
        self.weight_bytes = weight_bytes(loaded.model)  # {"quantized", "float", "total"}
        mc = loaded.config
        # an encoder takes at most its positions (RoBERTa: fewer than max_position_embeddings)
        self.context_length = min(cfg.context_length or mc.max_position,
                                  getattr(loaded.model, "max_tokens", mc.max_position))
        pool: KVPool = loaded.model.make_kv_pool(loaded.dtype, self.device)
        self.num_slots = choose_num_slots(cfg, pool, self.device, self.context_length)
        pool.allocate(self.num_slots)
        self._pool = pool
        allocator = SlotAllocator(self.num_slots)
        table = ReqToTokenTable(cfg.max_running_requests + 8, self.context_length + 1, self.device)
        self._kv = KVManager(allocator, table, RadixCache(allocator, disable=cfg.disable_radix_cache))
        self._media = None if mc.multimodal is None else MediaProcessor(
            self.model_path, mc.multimodal, type(loaded.model), mc.vocab_size, cfg.allow_url_media)
        self._grammar_compiler: Any = None
        self._requests = RequestFactory(self.tokenizer, mc, self.context_length, self.num_slots,
                                        self._get_grammar_compiler)
        self._pooling = self._pooling_inputs(loaded.model)
        if self._tp is None:
            return ModelRunner(loaded.model, pool, table, self.device, cfg.encoder_cache_mb << 20,
                               cfg.attention_backend)
        from .distributed.worker import TPRunner, send_setup

        send_setup(self._tp, self.num_slots, tuple(table.table.shape))
        return TPRunner(self._tp, loaded.model, pool, table, self.device)

    # ---- scheduler thread ----------------------------------------------------------------
    @torch.inference_mode()
    def _loop(self) -> None:
        reason = "the engine was shut down"
        try:
            self._serve()
        except BaseException as e:  # the loop itself broke: nothing will answer from here on
            logger.exception("the scheduler thread died")
            reason = f"the engine's scheduler thread died: {type(e).__name__}: {e}"
        finally:
            with self._submit_lock:
                self._dead = reason
            self._fail_unanswered(reason)
            try:
                self._scheduler.runner.close()  # on this thread: a TP runner's last collective
            except Exception:
                logger.exception("closing the model runner")

    def _serve(self) -> None:
        s = self._scheduler
        busy = False  # whether this thread ran work since its OpenMP pool was last freed
        while not self._stopped:
            idle = not s.has_work()
            if idle and busy:
                release_thread_pool()  # idle: let the caller's torch work have the CPUs
                busy = False
            if idle and s.requests:  # a request left every queue without its result: a bug
                lost = s.lost()
                logger.error("%d request(s) left every queue unanswered", len(lost))
                s.touched = lost
                self._deliver_errors(s.fail_step("engine error: the request was lost by the scheduler"))
            busy = self._drain_inbox(block=idle) or busy  # calls may run torch work too
            if idle:
                s.runner.idle()
            try:
                s.step()
            except Exception as e:  # a bug or a kernel failure: fail what the step touched, keep serving
                if getattr(e, "fatal", False):  # a tensor-parallel rank is gone: nothing can compute
                    raise
                logger.exception("engine step failed")
                self._deliver_errors(s.fail_step(f"engine error: {type(e).__name__}: {e}"))

    def _drain_inbox(self, block: bool) -> bool:
        """Takes every queued item; returns whether there was any."""
        try:
            item = self._inbox.get(timeout=0.5) if block else self._inbox.get_nowait()
        except queue.Empty:
            return False
        while True:
            kind, payload = item
            if kind == "add":  # one call's requests, together: the scheduler sees them in one step
                for req in payload:
                    self._scheduler.add(req)
            elif kind == "abort":
                while self._scheduler.abort(payload):
                    pass
            elif kind == "call":
                fn, fut = payload
                try:
                    fut.set_result(fn())
                except Exception as e:
                    fut.set_exception(e)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return True

    def _fail_unanswered(self, message: str) -> None:
        """Ends every request not yet answered (the thread is ending): the scheduler's, then any
        still in the inbox or lost on the way."""
        try:
            self._deliver_errors(self._scheduler.fail_all(message))
        except Exception:  # the scheduler's state is broken: answer the callers all the same
            logger.exception("failing the scheduler's requests")
        with self._submit_lock:
            rest = list(self._unanswered.values())
        for r in rest:
            finish_error(r, message)
        self._deliver_errors(rest)

    def _on_update(self, req: Req) -> None:
        """Hands the request's state to its caller (called by the scheduler after each change)."""
        if req.delivered:
            return
        result = build_result(req, self.tokenizer)  # NOTE: may raise: the step then fails it
        self._put(req, result)

    def _put(self, req: Req, result: dict) -> None:
        channel: queue.Queue = req.channel
        channel.put(result)
        if req.finished:
            req.delivered = True
            with self._submit_lock:
                self._unanswered.pop(id(req), None)
            channel.put(_DONE)

    def _deliver_errors(self, reqs: list[Req]) -> None:
        """Final results of failed requests; never raises (building a result may be what failed)."""
        for r in reqs:
            if r.delivered:
                continue
            try:
                result = build_result(r, self.tokenizer)
            except Exception:
                result = {"text": "", "output_ids": list(r.output_ids),
                          "meta_info": {"id": r.rid, "prompt_tokens": len(r.input_ids),
                                        "completion_tokens": len(r.output_ids), "cached_tokens": r.cached_tokens,
                                        "finish_reason": r.finish_reason}}
            self._put(r, result)

    def _get_grammar_compiler(self) -> Any:
        with self._compiler_lock:
            if self._grammar_compiler is None:
                from .constrained import GrammarCompiler

                self._grammar_compiler = GrammarCompiler(self.tokenizer, self.model_config.vocab_size,
                                                         eos_token_ids=set(self._requests.eos_ids))
            return self._grammar_compiler

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Runs fn on the scheduler thread, between steps, and returns its result."""
        fut: Future = Future()
        with self._submit_lock:
            self._check_alive()
            self._inbox.put(("call", (fn, fut)))
        while True:
            try:
                return fut.result(timeout=POLL_S)
            except FutureTimeout:
                if not self._thread.is_alive() and not fut.done():
                    raise RuntimeError(self._dead or "the engine's scheduler thread is gone") from None

    def _check_alive(self) -> None:
        if self._dead is not None:
            raise RuntimeError(self._dead)
        if self._stopped:
            raise RuntimeError("the engine was shut down")

    # ---- generation ----------------------------------------------------------------------
    def generate(self, prompt: str | list[str] | None = None, sampling_params: dict | list[dict] | None = None,
                 input_ids: list[int] | list[list[int]] | None = None, return_logprob: bool = False,
                 logprob_start_len: int | None = None, top_logprobs_num: int = 0,
                 return_text_in_logprobs: bool = False, stream: bool = False, rid: str | list[str] | None = None,
                 image_data: Any = None, input_embeds: Any = None, video_data: Any = None,
                 audio_data: Any = None) -> Any:
        """One prompt -> a result dict (a list of n dicts when n > 1); a list of prompts -> a list
        of results in order; stream=True -> an iterator of cumulative result dicts.
        input_embeds: one prompt given as embeddings (tokens, hidden) instead of text or ids.
        image_data / video_data / audio_data: one item or a list (one per placeholder) per
        prompt; the accepted forms are in runtime/multimodal/media.py and audio.py."""
        self._check_alive()
        self._check_generates()
        embeds = None
        if input_embeds is not None:
            if prompt is not None or input_ids is not None:
                raise ValueError("give exactly one of `prompt` (text), `input_ids` (token ids) or `input_embeds`")
            input_ids, embeds = self._requests.embeds_prompt(input_embeds, self.model_config.hidden_size)
        prompts, is_batch = self._requests.normalize_inputs(prompt, input_ids)
        media = expand_prompts(self._media, self.model_config.architecture, prompts, is_batch, image_data,
                               video_data, self._requests.check_length, audio_data)
        prompts = [ids for ids, _ in media] if media else prompts
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        rids = rid if isinstance(rid, list) else [rid] * len(prompts)
        if len(params) != len(prompts) or len(rids) != len(prompts):
            raise ValueError("sampling_params and rid lists must have one entry per prompt")
        groups = [self._requests.make(p, sp, r, return_logprob, logprob_start_len, top_logprobs_num,
                                      return_text_in_logprobs, stream)
                  for p, sp, r in zip(prompts, params, rids)]  # all validated before any is queued
        for i, g in enumerate(groups):
            g.attach_grammars()  # compiled off the scheduler thread, which keeps decoding others
            for r in [*g.copies, *([g.warmup] if g.warmup else [])]:
                r.input_embeds = embeds
                r.media = media[i][1] if media else None
        if stream:
            if is_batch or len(groups[0].copies) > 1:
                raise ValueError("stream=True takes one prompt with n=1")
            return self._stream(groups[0].copies[0])
        for g in groups:
            if g.warmup is not None:  # n > 1: cache the prompt once, then run the copies on it
                self._wait(self._submit_all([g.warmup])[0])
        channels = self._submit_all([r for g in groups for r in g.copies])
        results = [self._wait(c) for c in channels]
        if is_batch:
            return results
        return results if len(results) > 1 else results[0]

    def _check_generates(self) -> None:
        if self._scheduler.runner.task != "generate":
            raise ValueError(f"{self.model_config.architecture} is a {self._scheduler.runner.task} model: "
                             "use encode(), not generate()")

    def _submit_all(self, reqs: list[Req]) -> list[queue.Queue]:
        """Queues one call's requests as one inbox item, so the scheduler takes them all at once
        (batches as large as its budget allows, the same whatever the threads' timing); a channel
        per request."""
        for req in reqs:
            req.channel = queue.Queue()
        with self._submit_lock:
            self._check_alive()
            for req in reqs:
                self._unanswered[id(req)] = req
            self._inbox.put(("add", reqs))
        return [req.channel for req in reqs]

    def _next(self, channel: queue.Queue) -> Any:
        """The channel's next item; raises if the scheduler thread is gone and nothing came."""
        while True:
            try:
                return channel.get(timeout=POLL_S)
            except queue.Empty:
                if not self._thread.is_alive() and channel.empty():
                    raise RuntimeError(self._dead or "the engine's scheduler thread is gone") from None

    def _wait(self, channel: queue.Queue) -> dict:
        result = None
        while (item := self._next(channel)) is not _DONE:
            result = item
        return result  # type: ignore[return-value]

    def _stream(self, req: Req) -> Iterator[dict]:
        (channel,) = self._submit_all([req])
        try:
            while (item := self._next(channel)) is not _DONE:
                yield item
        finally:
            if not req.finished:  # the consumer stopped early: free the request's slots
                self.abort(req.rid)

    # ---- control -------------------------------------------------------------------------
    def abort(self, rid: str) -> None:
        self._inbox.put(("abort", rid))

    def flush_cache(self) -> bool:
        """Empties the radix cache and the encoder-output and cross-KV caches; refused (False) while requests
        are queued or running."""
        return self._call(self._scheduler.flush)

    def check_kv(self) -> None:
        """Asserts the slot invariants (every slot free, cached, or held by one live request)."""
        self._call(lambda: self._kv.check(self._scheduler.live_requests()))

    def modalities(self) -> dict[str, Any]:
        """Which media the model takes, and each one's prompt text (also in /get_model_info)."""
        return modalities(self)

    @property
    def is_multimodal(self) -> bool:
        return self._media is not None

    def get_server_info(self) -> dict[str, Any]:
        """The configuration and the live state of the cache and queues (info.server_info)."""
        return self._call(lambda: server_info(self))

    def shutdown(self) -> None:
        if self._stopped:
            return
        atexit.unregister(self.shutdown)
        self._stopped = True  # the thread ends after its current step and answers what is left
        self._inbox.put(("noop", None))
        self._thread.join(timeout=10)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
