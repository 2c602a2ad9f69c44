"""How a claim's outcome reads: its one-line headline, its numbers sorted, formulas in Unicode.

Every view of a verdict (the terminal table, the HTML report, ``report --markdown``,
``rankscope show-claim``) goes through these functions, so they agree. A verdict is a dict
(``ClaimVerdict.as_dict()``, as stored) or a ``ClaimVerdict``.

>>> sorted(["w=800", "w=50", "w=200"], key=natural_key)
['w=50', 'w=200', 'w=800']
>>> unicode_math("sigma^2 e^{-2t}, s_{K+1}, \\\\|W\\\\|_F")
'σ² e⁻²ᵗ, s_(K+1), ‖W‖_F'
>>> unicode_math("theta_norm2 and beta stay; sigma_1 and gamma^{2}")
'theta_norm2 and beta stay; σ_1 and γ²'
>>> headline({"verdict": "fail", "measured": {"drift": {"w=200": 0.13, "w=50": 0.33}}})
'drift = {w=50: 0.33, w=200: 0.13}'
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "HEADLINE_MAX",
    "claim_field",
    "format_value",
    "headline",
    "measured_lines",
    "natural_key",
    "sorted_items",
    "unicode_math",
]

HEADLINE_MAX = 160  # characters of an auto-summary headline (one terminal line or so)

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def natural_key(key: Any) -> tuple:
    """Sort key reading the numbers inside a key as numbers: ``w=50`` before ``w=200``."""
    text = str(key)
    parts: list[tuple[int, Any]] = []
    pos = 0
    for m in _NUMBER.finditer(text):
        if m.start() > pos:
            parts.append((1, text[pos : m.start()]))
        try:
            parts.append((0, float(m.group())))
        except ValueError:  # pragma: no cover - the regex only matches numbers
            parts.append((1, m.group()))
        pos = m.end()
    if pos < len(text):
        parts.append((1, text[pos:]))
    return tuple(parts)


def sorted_items(mapping: dict[Any, Any]) -> list[tuple[Any, Any]]:
    """The items of ``mapping`` with keys in natural (numeric-aware) order."""
    try:
        return sorted(mapping.items(), key=lambda kv: natural_key(kv[0]))
    except TypeError:  # mixed key shapes that do not compare: keep the stored order
        return list(mapping.items())


def format_value(v: Any, *, max_items: int = 12) -> str:
    """A number, list or dict in a short readable form (dict keys sorted numerically)."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3g}"
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        shown = ", ".join(format_value(x, max_items=max_items) for x in list(v)[:max_items])
        more = f", … ({len(v)} values)" if len(v) > max_items else ""
        return f"[{shown}{more}]"
    if isinstance(v, dict):
        items = sorted_items(v)
        shown = ", ".join(
            f"{k}: {format_value(x, max_items=max_items)}" for k, x in items[:max_items]
        )
        more = f", … ({len(items)} entries)" if len(items) > max_items else ""
        return "{" + shown + more + "}"
    return str(v)


def measured_lines(measured: dict[str, Any]) -> list[tuple[str, str]]:
    """``(key, value)`` rows of the full numbers, one level of nesting spelled out as ``a.b``."""
    rows: list[tuple[str, str]] = []
    for k, v in sorted_items(measured):
        if isinstance(v, dict) and v and all(not isinstance(x, dict) for x in v.values()):
            rows.extend((f"{k}.{kk}", format_value(vv, max_items=64)) for kk, vv in sorted_items(v))
        else:
            rows.append((str(k), format_value(v, max_items=64)))
    return rows


def claim_field(claim: Any, name: str, default: Any = "") -> Any:
    """A field of a stored verdict dict or of a ``ClaimVerdict`` (``id`` = ``claim_id``)."""
    if isinstance(claim, dict):
        if name == "id":
            return claim.get("id", claim.get("claim_id", default))
        return claim.get(name, default)
    if name == "id":
        name = "claim_id"
    return getattr(claim, name, default)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def headline(claim: Any, *, limit: int = HEADLINE_MAX) -> str:
    """The claim's headline; for old verdicts without one, a one-line summary of its numbers.

    The summary is cut at ``limit`` characters (a claim's full numbers stay in ``measured``).
    """
    text = claim_field(claim, "headline", "") or ""
    if text.strip():
        return " ".join(text.split())
    measured = claim_field(claim, "measured", {}) or {}
    summary = "; ".join(f"{k} = {format_value(v, max_items=4)}" for k, v in sorted_items(measured))
    note = claim_field(claim, "note", "") or ""
    if claim_field(claim, "verdict", "") == "inconclusive" and note:
        summary = f"{note}; {summary}" if summary else note
    return _one_line(summary or note or "(no numbers recorded)", limit)


_GREEK = {
    "alpha": "α",
    "beta": "β",
    "gamma": "γ",
    "delta": "δ",
    "Delta": "Δ",
    "epsilon": "ε",
    "eta": "η",
    "theta": "θ",
    "lambda": "λ",
    "mu": "μ",
    "pi": "π",
    "rho": "ρ",
    "sigma": "σ",
    "Sigma": "Σ",
    "tau": "τ",
    "phi": "φ",
    "omega": "ω",
}
_SUP = str.maketrans("0123456789+-=()nitTkKL", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱᵗᵀᵏᴷᴸ")
_SUB = str.maketrans("0123456789+-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎")
_SUP_OK = set("0123456789+-=()nitTkKL")
_SUB_OK = set("0123456789+-=()")
_TEX = {
    r"\|": "‖",
    r"\cdot": "·",
    r"\times": "×",
    r"\leq": "≤",
    r"\le": "≤",
    r"\geq": "≥",
    r"\ge": "≥",
    r"\approx": "≈",
    r"\to": "→",
    r"\infty": "∞",
    r"\sum": "Σ",
    r"\sqrt": "√",
    r"\ll": "≪",
    r"\neq": "≠",
}


def _script(body: str, table: dict, ok: set[str], marker: str) -> str:
    if body and all(ch in ok for ch in body):
        return body.translate(table)
    return f"{marker}{body}" if len(body) == 1 else f"{marker}({body})"


def unicode_math(text: str) -> str:
    """Write TeX-ish fragments (``^2``, ``^{-2t}``, ``_{K+1}``, ``\\sigma``) in Unicode.

    Superscripts and subscripts become Unicode scripts where every character has one;
    otherwise they stay readable as ``^(…)``/``_…``. Plain text passes through unchanged.
    """
    if not text:
        return text
    out = text
    for tex, uni in sorted(_TEX.items(), key=lambda kv: -len(kv[0])):
        out = out.replace(tex, uni)
    out = re.sub(r"\\(" + "|".join(_GREEK) + r")\b", lambda m: _GREEK[m.group(1)], out)
    out = re.sub(
        r"\b(" + "|".join(_GREEK) + r")(?=\^|_\{|_\d+\b)", lambda m: _GREEK[m.group(1)], out
    )  # sigma^2 -> σ^2 only when a script follows: "beta" in prose, theta_norm2 stay
    out = re.sub(r"\^\{([^{}]*)\}", lambda m: _script(m.group(1), _SUP, _SUP_OK, "^"), out)
    out = re.sub(r"\^([0-9]+|[-+][0-9]+)", lambda m: _script(m.group(1), _SUP, _SUP_OK, "^"), out)
    out = re.sub(r"_\{([^{}]*)\}", lambda m: _script(m.group(1), _SUB, _SUB_OK, "_"), out)
    return out
