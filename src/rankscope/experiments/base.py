"""The experiment contract: configs with presets, a run function, claims checked by code.

An experiment module builds one :class:`Experiment` and the registry lists it. ``run(config,
ctx)`` trains and measures for one seed and returns a :class:`Result`; the runner stores it and
later evaluates every :class:`Claim` on the stored results (so a claim never depends on
anything that was not stored). Nothing here prints, plots or seeds global generators.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from rankscope.experiments.summary import summary_from_dict
from rankscope.records import RecordLog
from rankscope.results import Result
from rankscope.train.errors import Diverged

__all__ = [
    "VERDICTS",
    "Check",
    "Claim",
    "ClaimVerdict",
    "Diverged",
    "Experiment",
    "Result",
    "RunContext",
    "check",
    "inconclusive",
]

Verdict = Literal["pass", "fail", "inconclusive"]
VERDICTS: tuple[str, ...] = ("pass", "fail", "inconclusive")


@dataclass
class RunContext:
    """What a run may use: its seed, generators, device, dtype, a record log and progress.

    ``generator`` (torch, on CPU) and ``rng`` (numpy) are seeded from ``seed`` by the runner;
    a run must draw all its randomness from them.
    """

    seed: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    log: RecordLog = field(default_factory=RecordLog)
    progress: Callable[[float], None] = lambda fraction: None
    generator: torch.Generator = field(init=False)
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(int(self.seed))
        self.rng = np.random.default_rng(int(self.seed))

    def child_generator(self, tag: int) -> torch.Generator:
        """An independent torch generator derived from the seed and ``tag`` (for sub-runs)."""
        return torch.Generator().manual_seed(int(self.seed) * 1_000_003 + int(tag))


@dataclass(frozen=True)
class Check:
    """The outcome of a claim on one result (or on all seeds): a verdict and the numbers.

    ``headline`` is one line with the deciding numbers against the criterion (and, for a
    fail or inconclusive, why); ``measured`` keeps the full numbers.
    """

    verdict: Verdict
    measured: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    headline: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


def check(condition: bool | None, note: str = "", headline: str = "", **measured: Any) -> Check:
    """``pass`` if ``condition``, ``fail`` if not, ``inconclusive`` if ``None``."""
    if condition is None:
        return Check("inconclusive", measured, note, headline)
    return Check("pass" if bool(condition) else "fail", measured, note, headline)


def inconclusive(note: str, headline: str = "", **measured: Any) -> Check:
    return Check("inconclusive", measured, note, headline or note)


@dataclass(frozen=True)
class Claim:
    """A paper's finding stated as a machine check.

    ``check`` maps one seed's result to a :class:`Check`. The claim passes when at least
    ``min_fraction`` of the conclusive seeds pass. ``across_seeds``, when given, replaces the
    per-seed logic and sees all results at once (for statements about a population of seeds).
    ``hard=False`` marks an empirical trend: its verdict is shown but never fails ``reproduce``.
    ``invert``, when given, maps a summary to a copy perturbed the wrong way, on which the
    per-seed ``check`` must fail (the shared experiment tester applies it to a smoke run).
    """

    id: str
    paper: str
    statement: str
    expected: str
    check: Callable[[Result], Check] | None = None
    min_fraction: float = 1.0
    across_seeds: Callable[[Sequence[Result]], Check] | None = None
    hard: bool = True
    invert: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if (self.check is None) == (self.across_seeds is None):
            raise ValueError(f"claim {self.id!r} needs exactly one of check= or across_seeds=")


@dataclass(frozen=True)
class ClaimVerdict:
    claim_id: str
    paper: str
    statement: str
    expected: str
    verdict: Verdict
    measured: dict[str, Any]
    seeds_passed: int
    seeds_total: int
    hard: bool = True
    note: str = ""
    headline: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.claim_id,
            "paper": self.paper,
            "statement": self.statement,
            "verdict": self.verdict,
            "measured": self.measured,
            "expected": self.expected,
            "seeds_passed": self.seeds_passed,
            "seeds_total": self.seeds_total,
            "hard": self.hard,
            "note": self.note,
            "headline": self.headline,
        }


@dataclass(frozen=True)
class Experiment:
    """A registered experiment.

    ``config_cls``: a frozen dataclass; ``presets`` maps ``smoke``/``default``/``paper`` to
    instances. ``seeds`` maps a preset to its default number of seeds. ``run`` computes one
    seed. ``run_many`` (optional) computes several same-shaped (config, seed) pairs as one
    vectorized ensemble; ``ensemble_key`` says which configs can share one.
    """

    id: str
    title: str
    papers: tuple[str, ...]
    description: str
    config_cls: type
    presets: dict[str, Any]
    run: Callable[[Any, RunContext], Result]
    claims: tuple[Claim, ...]
    seeds: dict[str, int] = field(default_factory=lambda: {"smoke": 1, "default": 3, "paper": 5})
    run_many: Callable[[Sequence[Any], Sequence[RunContext]], list[Result]] | None = None
    ensemble_key: Callable[[Any], Hashable] | None = None
    summary_cls: type | None = None

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.config_cls):
            raise TypeError(f"{self.id}: config_cls must be a dataclass")
        missing = {"smoke", "default", "paper"} - set(self.presets)
        if missing:
            raise ValueError(f"{self.id}: presets missing {sorted(missing)}")
        if self.summary_cls is not None and not dataclasses.is_dataclass(self.summary_cls):
            raise TypeError(f"{self.id}: summary_cls must be a dataclass")
        ids = [c.id for c in self.claims]
        if len(ids) != len(set(ids)):
            raise ValueError(f"{self.id}: duplicate claim ids {ids}")

    def preset(self, name: str) -> Any:
        if name not in self.presets:
            raise ValueError(
                f"unknown preset {name!r} for {self.id!r}; expected one of {sorted(self.presets)}"
            )
        return self.presets[name]

    def default_seeds(self, preset: str) -> int:
        return int(self.seeds.get(preset, 1))

    def typed(self, result: Result) -> Result:
        """``result`` with its stored (JSON) summary rebuilt as ``summary_cls``, strictly.

        Runs that did not finish keep an empty summary. A summary that does not match the
        dataclass raises :class:`~rankscope.experiments.summary.SummaryError`.
        """
        if self.summary_cls is None or result.status != "ok":
            return result
        if isinstance(result.summary, self.summary_cls):
            return result
        summary = summary_from_dict(self.summary_cls, result.summary)
        return dataclasses.replace(result, summary=summary)
