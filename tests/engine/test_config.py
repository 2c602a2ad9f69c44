"""Config overrides are parsed and type-checked; unknown keys list the valid ones."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from rankscope.experiments.config import apply_overrides, config_from_dict, config_to_dict


@dataclass(frozen=True)
class C:
    depth: int = 2
    lr: float = 0.1
    name: str = "a"
    flag: bool = False
    sig: tuple[float, ...] = (1.0, 2.0)
    opt: int | None = None


def test_overrides_parse_types():
    c = apply_overrides(C(), ["depth=5", "lr=1e-3", "flag=true", "sig=0.1,0.2,0.3", "opt=none"])
    assert c == C(depth=5, lr=1e-3, flag=True, sig=(0.1, 0.2, 0.3), opt=None)
    assert apply_overrides(C(), {"opt": "4"}).opt == 4


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ("dept=3", r"unknown config key 'dept'; did you mean 'depth'\? valid keys: \['depth'"),
        ("depth=x", "depth: expected an int, got 'x'"),
        ("depth=2.5", "expected an int"),
        ("flag=maybe", "expected a bool"),
        ("depth", "must look like key=value"),
    ],
)
def test_bad_overrides(item, match):
    with pytest.raises(ValueError, match=match):
        apply_overrides(C(), [item])


def test_round_trip():
    c = C(depth=3, sig=(0.5,))
    assert config_from_dict(C, config_to_dict(c)) == c
    with pytest.raises(ValueError, match="unknown config key"):
        config_from_dict(C, {"nope": 1})


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf"])
def test_non_finite_floats_are_refused(raw):
    with pytest.raises(ValueError, match="expected a finite float"):
        apply_overrides(C(), [f"lr={raw}"])


def test_bad_thread_counts_exit_2_with_a_message():
    for args, env in (
        (["--threads", "0", "list"], {}),
        (["--threads=x", "list"], {}),
        (["list"], {"RANKSCOPE_THREADS": "-1"}),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "rankscope", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=120,
        )
        assert out.returncode == 2, out.stderr
        assert "rankscope:" in out.stderr and "Traceback" not in out.stderr
