"""`python -m sgl.launch_server --model-path PATH [--host] [--port] [--api-key] [engine flags]`:
the HTTP server (SGLang's entry point name; the same as `sgl serve`)."""

from __future__ import annotations

from sgl.runtime.server.launch import main

if __name__ == "__main__":
    main()
