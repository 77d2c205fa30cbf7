"""What the fuzzing campaign's tests (tests/test_fuzz_*.py) share: each target's budget of
cases under the loaded hypothesis profile, the server errors it must not provoke, and its
figures (cases, answers, memory) for the summary conftest.py prints at the end of the run.

The profiles themselves are registered in conftest.py: "ci" (bounded, derandomized) unless
HYPOTHESIS_PROFILE=fuzz (`./dev fuzz`), which draws FUZZ_FACTOR times as many new cases.
"""

from __future__ import annotations

import contextlib
import logging
import resource
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

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


@dataclass
class Target:
    """One fuzzing target's run: how many cases, what they were answered."""

    name: str
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    cases: int = 0
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
        return (
            f"{self.name}: {self.cases} cases, {self.server_errors} server errors,"
            f" RSS {self.rss_before_mb:.0f} -> {self.rss_after_mb:.0f} MB ({answers})"
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


@contextlib.contextmanager
def fuzzing(name: str) -> Iterator[tuple[Target, ServerErrors]]:
    """A target's run: its figures recorded for the summary, server errors collected (the
    test checks them after each case), memory compared at the end."""
    target = RESULTS[name] = Target(name, rss_before_mb=rss_mb())
    errors = ServerErrors()
    root = logging.getLogger()
    root.addHandler(errors)
    try:
        yield target, errors
    finally:
        root.removeHandler(errors)
        target.rss_after_mb = rss_mb()
    late = errors.take()
    target.server_errors += len(late)
    assert not late, f"{name}: errors logged after the cases:\n" + "\n".join(late[:3])
    growth = target.rss_after_mb - target.rss_before_mb
    assert growth < RSS_GROWTH_LIMIT_MB, f"{name}: RSS grew by {growth:.0f} MB"


def summary_lines() -> list[str]:
    """The campaign's table, one line per target run in this session."""
    profile = settings.get_current_profile_name()
    return [f"fuzzing ({profile} profile):"] + [t.line() for t in RESULTS.values()]
