"""What the fuzzing campaign's tests (tests/test_fuzz_*.py) share: each target's budget of
cases under the loaded hypothesis profile, the server errors it must not provoke, and its
figures (cases, answers, memory) for the summary conftest.py prints at the end of the run.

The profiles themselves are registered in conftest.py: "ci" (bounded, derandomized) unless
HYPOTHESIS_PROFILE=fuzz (`./dev fuzz`), which draws FUZZ_FACTOR times as many new cases.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import logging
import random
import resource
import sys
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from _pytest.logging import LogCaptureHandler
from hypothesis import settings

CI_EXAMPLES = 100  # the "ci" profile's max_examples: a target's budget is a share of it
FUZZ_FACTOR = 30
RSS_GROWTH_LIMIT_MB = 100.0  # generous: the figure is printed, the bound catches a leak


def examples(ci_cases: int) -> int:
    """A target's max_examples: `ci_cases` under the ci profile, scaled with the profile."""
    return max(1, ci_cases * settings().max_examples // CI_EXAMPLES)


def rss_mb() -> float:
    """The test process's resident memory now (it holds the gateway under test)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


T = TypeVar("T")
REPLAY_CASES = 5000  # a pure function's cases kept to be replayed (a uniform sample)


class Replay(Generic[T]):
    """A uniform sample of a target's cases (reservoir sampling), replayed after hypothesis
    to measure what the function under test keeps alive.

    The RSS of a process running hypothesis is the wrong measure for a pure function: the
    telemetry parser's 30,000 fuzz cases grew it by 240 MB with the parser not even called
    (hypothesis's own peak of 73 MB of objects left the heaps fragmented, 2.7 MB stayed
    alive). Tracing allocations for the whole run costs 40 times the time; tracing each call
    alone counts what CPython's free lists keep for reuse (a few KB a call) as kept."""

    def __init__(self, seed: int = 13, size: int = REPLAY_CASES) -> None:
        self.cases: list[T] = []
        self.seen = 0
        self._size = size
        self._random = random.Random(seed)

    def keep(self, case: T) -> None:
        self.seen += 1
        if len(self.cases) < self._size:
            self.cases.append(case)
        elif (at := self._random.randrange(self.seen)) < self._size:
            self.cases[at] = case

    def retained(
        self, call: Callable[[T], object], reset: Callable[[], object] = lambda: None
    ) -> int:
        """Bytes that `call` leaves alive over the sample's second pass: the first pass
        fills what is meant to fill once (caches, free lists, specialised bytecode); a call
        that keeps anything keeps it again, traced by tracemalloc. `reset()`, after each
        pass, puts back the state the cases change on purpose (what a gateway was given to
        keep, such as the last city imported), so that only what they leak is counted."""
        for case in self.cases:
            call(case)
        reset()
        gc.collect()
        tracemalloc.start()
        try:
            for case in self.cases:
                call(case)
            reset()
            gc.collect()
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()


@dataclass
class Target:
    """One fuzzing target's run: how many cases, what they were answered."""

    name: str
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    cases: int = 0
    retained_bytes: int | None = None  # a pure function's: what a replay left alive
    answers: Counter[str] = field(default_factory=Counter)  # HTTP status or outcome
    server_errors: int = 0  # 5xx answers and error log lines

    def answered(self, outcome: int | str, kind: str = "") -> None:
        """One case, its outcome (an HTTP status, or a word), and what kind of case it was."""
        self.cases += 1
        self.answers[f"{kind} {outcome}".strip()] += 1
        if isinstance(outcome, int) and outcome >= 500:
            self.server_errors += 1

    def line(self) -> str:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(self.answers.items()))
        retained = "" if self.retained_bytes is None else f", {self.retained_bytes} B retained"
        return (
            f"{self.name}: {self.cases} cases, {self.server_errors} server errors,"
            f" RSS {self.rss_before_mb:.0f} -> {self.rss_after_mb:.0f} MB{retained} ({answers})"
        )


RESULTS: dict[str, Target] = {}


class ServerErrors(logging.Handler):
    """Log records at ERROR or above anywhere in the process: an exception the gateway did
    not handle (aiohttp's "Error handling request", a task's exception never retrieved, a
    `logger.exception` of ours)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        """The records seen since the last call, formatted with their traceback."""
        seen, self.records = self.records, []
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        return [formatter.format(record) for record in seen]


class RecentLines(logging.Handler):
    """The last log lines, kept as text: what a failing target's report shows of its logs.

    pytest's own capture keeps every record of a test, and a record keeps its arguments: a
    refusal logged with its exception keeps the traceback, its frames and the request body
    they hold (up to 256 KB a case). Over the 6,000 WHIP cases of the fuzz profile that was
    +293 MB of the test process's RSS, none of it the gateway's; these lines keep nothing."""

    def __init__(self, keep: int = 300) -> None:
        super().__init__(logging.NOTSET)
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def pytest_capture_replaced() -> Iterator[RecentLines]:
    """pytest's log capture handlers off the root logger for a while, RecentLines instead;
    the lines go to stderr (which pytest shows) if the block fails."""
    root = logging.getLogger()
    captures = [h for h in root.handlers if isinstance(h, LogCaptureHandler)]
    recent = RecentLines()
    for handler in captures:
        root.removeHandler(handler)
    root.addHandler(recent)
    try:
        yield recent
    except BaseException:
        sys.stderr.write("the last log lines:\n" + "\n".join(recent.lines) + "\n")
        raise
    finally:
        root.removeHandler(recent)
        for handler in captures:
            root.addHandler(handler)


@contextlib.contextmanager
def fuzzing(name: str, rss_bound: bool = True) -> Iterator[tuple[Target, ServerErrors]]:
    """A target's run: its figures recorded for the summary, server errors collected (the
    test checks them after each case), memory compared at the end (the process's RSS, unless
    `rss_bound` is False: a pure function's target bounds `retained_bytes` instead)."""
    target = RESULTS[name] = Target(name, rss_before_mb=rss_mb())
    errors = ServerErrors()
    root = logging.getLogger()
    root.addHandler(errors)
    try:
        with pytest_capture_replaced():
            yield target, errors
    finally:
        root.removeHandler(errors)
        target.rss_after_mb = rss_mb()
    late = errors.take()
    target.server_errors += len(late)
    assert not late, f"{name}: errors logged after the cases:\n" + "\n".join(late[:3])
    growth = target.rss_after_mb - target.rss_before_mb
    assert not rss_bound or growth < RSS_GROWTH_LIMIT_MB, f"{name}: RSS grew by {growth:.0f} MB"


def summary_lines() -> list[str]:
    """The campaign's table, one line per target run in this session."""
    profile = settings.get_current_profile_name()
    return [f"fuzzing ({profile} profile):"] + [t.line() for t in RESULTS.values()]
