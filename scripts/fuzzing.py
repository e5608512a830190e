"""What the fuzz scripts share (issue #20): drive a seeded `hypothesis` strategy for N cases,
run each case under a hang alarm, sort what happens into outcomes, clean refusals and
tracebacks, and write the JSON report (cases, outcomes, tracebacks, slowest case, hangs,
peak RSS). Also the JSON strategies the structure-aware targets mutate documents with.

A target is a function `check(case) -> str` that returns what became of an accepted case
and raises one of the target's refusal types for a refused one; anything else it raises is
a traceback, which is what the fuzzing looks for. The test suite drives the same targets
for a few hundred cases (tests/fuzz/).
"""

from __future__ import annotations

import argparse
import atexit
import collections
import json
import re
import resource
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as seeded
from hypothesis import strategies as st

HANG_S = 10  # a case running longer is a hang (issue #20: 0 hangs over 10 s)

# Values that break code written for ordinary ones: C integer edges, huge and tiny floats.
EDGE_INTS = [0, 1, -1, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1,
             2**64, 10**100]
EDGE_FLOATS = [0.0, -0.0, 1e-310, 1e308, -1e308, 0.5, 1.5]


class Hang(BaseException):
    """Raised by the alarm in a case that runs past HANG_S."""


def _alarm(_signum: int, _frame: object) -> None:
    raise Hang


def masked(text: str) -> str:
    """A message with its variable parts (numbers, quoted values, paths) masked, so that like
    outcomes count together."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"|/\S+", "…", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:90]


@dataclass
class Campaign:
    """The record of one fuzz target's cases."""

    target: str
    refusals: tuple[type[BaseException], ...]
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    tracebacks: list[dict[str, str]] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    cases: int = 0
    slowest: tuple[float, str] = (0.0, "")

    def run(self, check: Callable[[Any], str], case: Any) -> None:
        """Run one case; never raises (but a KeyboardInterrupt)."""
        self.cases += 1
        describe = repr(case)[:300]
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, HANG_S)
        t0 = time.perf_counter()
        try:
            self.outcomes[check(case)] += 1
        except Hang:
            self.hangs.append(describe)
            self.outcomes["hang"] += 1
        except self.refusals as exc:
            self.outcomes[f"refused: {masked(str(getattr(exc, 'problem', exc)))}"] += 1
        except Exception as exc:
            self.tracebacks.append({"case": describe, "error": f"{type(exc).__name__}: {exc}"
                                    [:300], "where": traceback.format_exc(limit=-4)[-1200:]})
            self.outcomes[f"traceback: {type(exc).__name__}"] += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        seconds = time.perf_counter() - t0
        if seconds > self.slowest[0]:
            self.slowest = (seconds, describe)

    def drive(self, strategy: st.SearchStrategy[Any], check: Callable[[Any], str],
              cases: int, seed: int) -> Campaign:
        """Run `cases` cases drawn from `strategy` by hypothesis, seeded (no example
        database, no shrinking: every case is recorded, none fails the run)."""
        @seeded(seed)
        @settings(max_examples=cases, database=None, deadline=None, derandomize=False,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(strategy)
        def body(case: Any) -> None:
            self.run(check, case)

        body()
        return self

    def report(self, seed: int, **extra: Any) -> dict[str, Any]:
        return {
            "target": self.target, "seed": seed, "cases": self.cases,
            "tracebacks": len(self.tracebacks), "traceback_cases": self.tracebacks[:20],
            "hangs_over_10_s": len(self.hangs), "hang_cases": self.hangs[:20],
            "slowest_case_s": round(self.slowest[0], 3), "slowest_case": self.slowest[1],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            **extra,
            "outcomes": dict(sorted(self.outcomes.items())),
        }


def workdir(target: str) -> Path:
    """A temporary folder for a target's files, removed when the process ends."""
    path = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def run_script(doc: str, campaign: Campaign, strategy: st.SearchStrategy[Any],
               check: Callable[[Any], str]) -> None:
    """A fuzz script's command line: --cases cases of `strategy` through `check`, seeded by
    --seed, the report written to --json (default docs/bench/fuzz-TARGET.json)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path,
                        default=Path(f"docs/bench/fuzz-{campaign.target}.json"))
    args = parser.parse_args()
    write(campaign.drive(strategy, check, args.cases, args.seed).report(args.seed), args.json)


def write(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in result.items()
                      if k not in ("outcomes", "traceback_cases", "hang_cases")}, indent=1))
    for case in result["traceback_cases"][:3]:
        print(case["error"], case["where"], sep="\n")


# --- JSON documents ------------------------------------------------------------------------

def scalars() -> st.SearchStrategy[Any]:
    """JSON scalars, edges included (inf and nan only through `floats`' own choice)."""
    return st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(EDGE_INTS),
                     st.floats(), st.sampled_from(EDGE_FLOATS), st.text(max_size=40),
                     st.text(max_size=3).map(lambda s: s * 2000))


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars in lists and objects, nested."""
    return st.recursive(scalars(), lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(max_size=12), inner, max_size=5)), max_leaves=max_leaves)


def paths(doc: Any) -> list[tuple[Any, ...]]:
    """Every path (keys and indexes) into a JSON document, the empty path first."""
    found: list[tuple[Any, ...]] = [()]
    stack: list[tuple[tuple[Any, ...], Any]] = [((), doc)]
    while stack:
        where, value = stack.pop()
        items = (value.items() if isinstance(value, dict)
                 else enumerate(value) if isinstance(value, list) else ())
        for key, child in items:
            found.append((*where, key))
            stack.append(((*where, key), child))
    return found


def _set(doc: Any, where: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not where:
        return value
    parent = doc
    for key in where[:-1]:
        parent = parent[key]
    if delete:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    return doc


@st.composite
def mutated(draw: st.DrawFn, doc: Any, max_edits: int = 3) -> Any:
    """A deep copy of a JSON document with 1 to `max_edits` edits: a value replaced by any
    JSON value (or by a neighbour's), a key deleted, or a key added."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, max_edits))):
        where = draw(st.sampled_from(paths(doc)))
        edit = draw(st.sampled_from(["replace", "replace", "delete", "add", "swap"]))
        if edit == "delete" and where:
            doc = _set(doc, where, None, delete=True)
        elif edit == "add":
            target = doc
            for key in where:
                target = target[key]
            if isinstance(target, dict):
                target[draw(st.text(max_size=12))] = draw(json_values(4))
            elif isinstance(target, list):
                target.append(draw(json_values(4)))
        elif edit == "swap" and where:
            other = draw(st.sampled_from(paths(doc)))
            source = doc
            for key in other:
                source = source[key]
            doc = _set(doc, where, json.loads(json.dumps(source)), delete=False)
        else:
            doc = _set(doc, where, draw(json_values()), delete=False)
    return doc


@st.composite
def flipped(draw: st.DrawFn, data: bytes, max_flips: int = 8) -> bytes:
    """`data` with some bytes replaced, cut short, or grown by random bytes."""
    b = bytearray(data)
    kind = draw(st.sampled_from(["flip", "flip", "cut", "grow"]))
    if kind == "cut":
        return bytes(b[:draw(st.integers(0, len(b)))])
    if kind == "grow":
        at = draw(st.integers(0, len(b)))
        return bytes(b[:at] + draw(st.binary(max_size=64)) + b[at:])
    for _ in range(draw(st.integers(1, max_flips))):
        if b:
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
    return bytes(b)
