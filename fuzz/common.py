"""What the atheris harnesses share: the import path, the seed corpora and the libFuzzer run.

Each harness checks the contract of tests/fuzz/contract.py (the same one the hypothesis tests
check), so a crash here is a contract violation or an undefined exception.  The working corpus
(what libFuzzer adds) goes to build/fuzz/<target>/corpus; crashing inputs to
build/fuzz/<target>/; the fixed ones are kept in fuzz/seeds/<target>/ as regressions.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tests/fuzz/contract.py is ``fuzz.contract`` there

import atheris  # type: ignore[import-untyped]  # noqa: E402

__all__ = ["ROOT", "atheris", "run"]


def run(target: str, test_one_input: Callable[[bytes], None], seeds: list[Path],
        kind: str | None = None) -> None:
    """libFuzzer over ``test_one_input``; the command line's own options (-runs=...,
    -rss_limit_mb=..., -timeout=...) pass through, and files given replay those inputs.
    ``target`` names the work folder; ``kind`` (default: the target) the dictionary and the
    kept seeds, which targets of one input kind share."""
    kind = kind or target
    work = ROOT / "build" / "fuzz" / target
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    kept = ROOT / "fuzz" / "seeds" / kind
    dirs = [str(corpus), *(str(p) for p in seeds), *([str(kept)] if kept.is_dir() else [])]
    if any(not arg.startswith("-") for arg in sys.argv[1:]):
        dirs = []  # files or directories given: replay those (a crash, a corpus)
    options = [f"-artifact_prefix={work}/", f"-dict={ROOT / 'fuzz' / (kind + '.dict')}"]
    atheris.Setup([sys.argv[0], *options, *sys.argv[1:], *dirs], test_one_input)
    atheris.Fuzz()
