"""Experiments: registered reproductions of the papers, with claims checked by code."""

from rankscope.experiments.base import (
    Check,
    Claim,
    ClaimVerdict,
    Diverged,
    Experiment,
    Result,
    RunContext,
    check,
    inconclusive,
)
from rankscope.experiments.config import apply_overrides, config_from_dict, config_to_dict
from rankscope.experiments.registry import all_experiments, get_experiment

__all__ = [
    "Check",
    "Claim",
    "ClaimVerdict",
    "Diverged",
    "Experiment",
    "Result",
    "RunContext",
    "all_experiments",
    "apply_overrides",
    "check",
    "config_from_dict",
    "config_to_dict",
    "get_experiment",
    "inconclusive",
]
