"""``sglang.lang.backend``: the backends' SGLang module paths, as aliases of ``sgl.backend``."""
