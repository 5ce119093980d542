"""JSON-Schema-Test-Suite (draft 2020-12) conformance at the token level.

For every schema: it compiles, or it is rejected with an error naming a keyword. For every
compiled schema, each instance is serialized compactly (the grammar's whitespace policy),
tokenized with the default model's tokenizer, and walked through the grammar: every token must
be in the allowed mask and EOS must be allowed at the end. Valid instances should be accepted
(a rejection is a documented under-approximation); an accepted invalid instance is a bug.

Indexes are built over the tokens of the group's instances plus all single-byte tokens; a
token's transitions do not depend on the rest of the vocabulary, so the walk is the one the full
49k-token index gives (``--full-vocab`` checks that, slowly).

Script mode: ``python tests/runtime/constrained/conformance.py [--full-vocab] [-v]``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from sgl.runtime.constrained import (
    CompiledGrammar,
    ConstraintError,
    Grammar,
    TokenizerInfo,
    UnsupportedSchemaError,
    schema_to_regex,
)

SUITE = "/work/shared/data/json-schema-test-suite/draft2020-12"
SKIP_FILES = {"refRemote.json"}  # remote refs need a network


@dataclass
class Counts:
    compiled: int = 0
    rejected: int = 0
    valid_accepted: int = 0
    valid_rejected: int = 0
    invalid_rejected: int = 0
    invalid_accepted: int = 0
    not_serializable: int = 0
    rejected_by_keyword: Counter = field(default_factory=Counter)
    accepted_invalid: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        kw = ", ".join(f"{k}={n}" for k, n in self.rejected_by_keyword.most_common())
        return (
            f"schemas: compiled={self.compiled} rejected={self.rejected}\n"
            f"valid instances: accepted={self.valid_accepted} rejected={self.valid_rejected}\n"
            f"invalid instances: rejected={self.invalid_rejected} accepted={self.invalid_accepted}\n"
            f"not serializable identically: {self.not_serializable}\n"
            f"rejections by keyword: {kw}\n"
            f"time: {self.seconds:.1f}s"
        )


def serialize(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def token_walk(compiled: CompiledGrammar, token_ids: list[int]) -> bool:
    """True if every token is allowed by the grammar's mask in turn and EOS is allowed at the end.

    NOTE: the grammar's (language) mask, not the decoding mask, which narrows forced runs to the
    tokenizer's own split of them: a valid text may be tokenized another way."""
    g = Grammar(compiled)
    for t in token_ids:
        if bool(compiled.blocked_mask(g.state)[t]) or not g.accepts_token(t):
            return False
        g.advance(t)
    eos = min(compiled.info.eos_token_ids)
    return g.accepts_eos() and not bool(compiled.blocked_mask(g.state)[eos])


def groups(suite: str = SUITE):
    for path in sorted(glob.glob(os.path.join(suite, "*.json"))):
        if os.path.basename(path) in SKIP_FILES:
            continue
        for group in json.load(open(path, encoding="utf-8")):
            if "localhost:1234" in json.dumps(group["schema"]):
                continue  # remote refs
            yield os.path.basename(path), group


def run_suite(info: TokenizerInfo, full_vocab: bool = False, verbose: bool = False) -> Counts:
    counts = Counts()
    start = time.perf_counter()
    full = info.outlines_vocabulary() if full_vocab else None
    for fname, group in groups():
        where = f"{fname}: {group['description']}"
        try:
            regex = schema_to_regex(group["schema"])
        except UnsupportedSchemaError as exc:
            counts.rejected += 1
            counts.rejected_by_keyword[exc.keyword] += 1
            if verbose:
                print(f"REJECTED {where}: {exc}")
            continue
        encoded = []
        for test in group["tests"]:
            text = serialize(test["data"])
            ids = info.encode(text)
            if info.decode_bytes(ids) != text.encode():
                counts.not_serializable += 1
                continue
            encoded.append((test, ids))
        vocab = full or info.outlines_vocabulary({t for _, ids in encoded for t in ids})
        try:
            compiled = CompiledGrammar(regex, info, vocab)
        except ConstraintError as exc:
            counts.rejected += 1
            counts.rejected_by_keyword["regex"] += 1
            if verbose:
                print(f"REJECTED {where}: {exc}")
            continue
        counts.compiled += 1
        for test, ids in encoded:
            accepted = token_walk(compiled, ids)
            if test["valid"]:
                counts.valid_accepted += accepted
                counts.valid_rejected += not accepted
                if verbose and not accepted:
                    print(f"valid rejected: {where} / {test['description']}: {serialize(test['data'])[:80]}")
            else:
                counts.invalid_rejected += not accepted
                counts.invalid_accepted += accepted
                if accepted:
                    counts.accepted_invalid.append(f"{where} / {test['description']}")
    counts.seconds = time.perf_counter() - start
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-vocab", action="store_true", help="index over all 49k tokens (slow)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(__file__))
    from conftest import load_tokenizer

    counts = run_suite(TokenizerInfo.from_hf(load_tokenizer(), 49152), args.full_vocab, args.verbose)
    print(counts.summary())
    for item in counts.accepted_invalid:
        print("ACCEPTED INVALID:", item)


if __name__ == "__main__":
    main()
