"""``sglang.lang`` under sgl: the module paths SGLang programs import, as aliases of ours.

``sgl.lang.ir``, ``sgl.lang.chat_template``, ``sgl.lang.choices``, ``sgl.lang.interpreter``,
``sgl.lang.api``, ``sgl.lang.tracer``, ``sgl.lang.backend.{base_backend,runtime_endpoint,openai}``
(docs/sglang_compatibility.md lists them).
"""
