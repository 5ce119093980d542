"""`python -m sgl.launch_server` and `sgl serve`: load the engine, then serve it with uvicorn.

    python -m sgl.launch_server --model-path PATH [--host 127.0.0.1] [--port 30000] [--api-key K]
                                [any engine flag: --max-total-tokens, --schedule-policy, ...]

Past one machine (as SGLang spells the flags): `--tp-size N` runs N tensor-parallel ranks;
with `--nnodes M --node-rank R --dist-init-addr HOST:PORT` they span M nodes, each launched
with the same flags and its own `--node-rank`; only node 0 serves HTTP (the others run their
ranks until node 0 stops or a rank dies). `--dp-size N` serves N engine replicas in this
process behind one cache-aware front (`--load-balance-method`, distributed/data_parallel.py).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..distributed.prefix_router import POLICIES
from ..engine_args import add_engine_args, engine_kwargs
from .context import DEFAULT_MAX_BODY_BYTES, ServerSettings

logger = logging.getLogger("sgl.server")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sgl serve", description="sgl HTTP server (SGLang-native and OpenAI API)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY` on every route but /health")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                        help=f"largest request body accepted (default: {DEFAULT_MAX_BODY_BYTES})")
    parser.add_argument("--served-model-name", default=None, help="model id in the OpenAI API (default: the model path)")
    parser.add_argument("--tool-call-parser", default=None,
                        help="tool-call format: hermes (Qwen 2.5), llama3, mistral, deepseekv3, gpt-oss "
                             "(default: from the chat template)")
    parser.add_argument("--reasoning-parser", default=None,
                        help="put a reasoning model's thinking into reasoning_content: deepseek-r1, qwen3, gpt-oss")
    parser.add_argument("--dp-size", type=int, default=1,
                        help="engine replicas behind this server, routed per prompt (default: 1)")
    parser.add_argument("--load-balance-method", default="cache_aware", choices=list(POLICIES),
                        help="how --dp-size replicas are chosen (default: cache_aware)")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    add_engine_args(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = ServerSettings(host=args.host, port=args.port, api_key=args.api_key,
                                  max_body_bytes=args.max_body_bytes, served_model_name=args.served_model_name,
                                  tool_call_parser=args.tool_call_parser, reasoning_parser=args.reasoning_parser)
    except ValueError as e:
        sys.exit(f"sgl serve: {e}")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        logger.warning("binding %s without --api-key: anyone who can reach this address can use the server",
                       settings.host)

    if args.node_rank != 0:
        _serve_ranks(args)
        return

    import uvicorn

    from ..engine import Engine
    from .app import create_app

    if args.dp_size > 1:
        from ..distributed.data_parallel import DataParallelEngine

        try:
            engine = DataParallelEngine(dp_size=args.dp_size, load_balance_method=args.load_balance_method,
                                        **engine_kwargs(args))
        except ValueError as e:
            sys.exit(f"sgl serve: {e}")
    else:
        engine = Engine(**engine_kwargs(args))
    app = create_app(engine, settings, shutdown_engine=True)
    print(f"sgl server: {engine.model_path} on http://{settings.host}:{settings.port}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level,
                timeout_graceful_shutdown=5)


def _serve_ranks(args: argparse.Namespace) -> None:
    """A node other than 0: its tensor-parallel ranks, no HTTP; exits non-zero when a rank fails."""
    from ..config import EngineConfig
    from ..distributed.worker import serve_node

    try:
        cfg = EngineConfig(**engine_kwargs(args))
    except ValueError as e:
        sys.exit(f"sgl serve: {e}")
    print(f"sgl server: node {cfg.node_rank} of {cfg.nnodes}: ranks of tp_size={cfg.tp_size}, joining "
          f"{cfg.dist_init_addr} (no HTTP on this node)", file=sys.stderr, flush=True)
    serve_node(cfg)


if __name__ == "__main__":
    main()
