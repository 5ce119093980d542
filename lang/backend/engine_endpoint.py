"""``sgl.Runtime().endpoint``: SGLang programs reach the model through
``global_config.default_backend.endpoint`` (``get_model_name``, ``get_model_info``,
``get_server_info``); SGLang's ``Runtime`` is a server process with a ``RuntimeEndpoint`` there.
Ours is the in-process engine, so the same calls are answered by the engine, with no HTTP, in
the shape our server gives over ``/get_model_info`` and ``/get_server_info``.
"""

from __future__ import annotations

from typing import Any


class EngineEndpoint:
    """The ``RuntimeEndpoint`` calls that describe the model, for an in-process engine."""

    base_url = None  # no server: nothing to connect to

    def __init__(self, backend: Any) -> None:
        self._backend = backend  # the Runtime: its engine, template and cache calls

    @property
    def model_info(self) -> dict[str, Any]:
        """What ``/get_model_info`` answers (``RuntimeEndpoint.model_info`` in SGLang)."""
        from sgl.runtime.info import model_info

        return model_info(self._backend.engine)

    def get_model_name(self) -> str:
        """The model's path, as SGLang's ``RuntimeEndpoint.get_model_name`` returns."""
        return str(self.model_info["model_path"])

    def get_model_info(self) -> dict[str, Any]:
        return self.model_info

    def get_server_info(self) -> dict[str, Any]:
        return self._backend.get_server_info()

    def get_chat_template(self) -> Any:
        return self._backend.get_chat_template()

    def flush_cache(self) -> Any:
        return self._backend.flush_cache()
