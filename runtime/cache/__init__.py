"""KV memory: slot pool, slot allocator, request-to-token table and the radix prefix cache."""

from .allocator import SlotAllocator
from .kv_pool import KVPool, MHAKVPool, MLAKVPool
from .radix_cache import MatchResult, RadixCache
from .req_to_token import ReqToTokenTable

__all__ = ["KVPool", "MHAKVPool", "MLAKVPool", "MatchResult", "RadixCache", "ReqToTokenTable", "SlotAllocator"]
