"""Token probabilities made visible: how sure the model was of each word it chose.

With ``--logprobs`` Ollama (0.12.11+) sends, for every generated token, its log
probability and the likeliest alternatives at that position.  :class:`TokenProbabilities`
shows the answer token by token, each shaded by its probability (green: sure, through
yellow, to red: a close call), with the alternatives and their probabilities on hover (a
``title``) and on a click (an inline ``<details>``): a view a teacher can put on a
projector to show that a model picks words, and how narrowly.

Everything from the server is untrusted: tokens are text, always escaped, and the HTML
uses inline styles only (JupyterLab drops ``<style>`` from untrusted notebooks) and no
scripts, so it looks the same in a notebook a colleague shared.
"""

from __future__ import annotations

import colorsys
import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..engine.terminal import printable

# The colours are translucent, so the text stays readable on light and dark themes.
_CONTAINER_STYLE = "white-space:pre-wrap;line-height:1.9;font-family:var(--jp-code-font-family,monospace)"
_LEGEND_STYLE = "opacity:0.7;font-size:0.85em;margin-top:0.4em"
# The alternatives float under their token (position:absolute, which the sanitizer keeps),
# so opening one moves no other word; dark text on a light box reads on any theme.
_ALTERNATIVES_STYLE = (
    "display:block;position:absolute;left:0;top:100%;z-index:10;margin:0.1em 0;padding:0.1em 0.4em;"
    "line-height:1.4;background-color:#ffffff;color:#1a1a1a;box-shadow:0 1px 4px rgba(0,0,0,0.35);"
    "border:1px solid rgba(128,128,128,0.5);border-radius:3px;font-size:0.85em;white-space:nowrap"
)
#: Room for the alternatives of the last line, which float over the legend and below it
#: (the output area would otherwise scroll to show them): rows of 0.85em at line-height
#: 1.4, less the legend's own height (about two lines).
_ROOM_PER_ROW_EM = 1.25
_LEGEND_EM = 2.4


@dataclass(frozen=True)
class Alternative:
    """A token the model could have chosen at a position, and its probability."""

    token: str
    probability: float


@dataclass(frozen=True)
class Token:
    """One generated token: its text, its probability, and the alternatives at its place."""

    token: str
    probability: float
    alternatives: tuple[Alternative, ...] = ()


def probability(logprob: Any) -> float:
    """``exp(logprob)`` clamped to [0, 1]; anything that is not a number counts as 0.

    >>> probability(0.0), probability(math.log(0.25)), probability("x"), probability(None)
    (1.0, 0.25, 0.0, 0.0)
    """
    try:
        value = math.exp(float(logprob))
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return 0.0 if math.isnan(value) else min(1.0, value)


def tokens_from(entries: Iterable[Mapping[str, Any]]) -> list[Token]:
    """Ollama's ``logprobs`` entries as :class:`Token` objects; malformed parts are skipped."""
    tokens = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        alternatives = tuple(
            Alternative(str(alt.get("token", "")), probability(alt.get("logprob")))
            for alt in entry.get("top_logprobs") or ()
            if isinstance(alt, Mapping)
        )
        tokens.append(Token(str(entry.get("token", "")), probability(entry.get("logprob")), alternatives))
    return tokens


def percent(p: float) -> str:
    """A probability for people: ``93%``, ``4.2%``, ``<0.1%``.

    >>> percent(0.934), percent(0.042), percent(0.0004), percent(1.0)
    ('93%', '4.2%', '<0.1%', '100%')
    """
    if p < 0.001:
        return "<0.1%"
    if p < 0.1:
        return f"{p * 100:.1f}%"
    return f"{p * 100:.0f}%"


def shade(p: float) -> str:
    """The background of a token: hue from red (0) through yellow to green (1), translucent.

    ``rgba()``, not ``hsla()``: JupyterLab's sanitizer keeps only hex, named, ``rgb`` and
    ``rgba`` colours in the outputs of untrusted notebooks.

    >>> [shade(p).removeprefix("background-color:") for p in (1.0, 0.5, 0.0)]
    ['rgba(19,236,19,0.35)', 'rgba(236,236,19,0.35)', 'rgba(236,19,19,0.35)']
    """
    red, green, blue = colorsys.hls_to_rgb(max(0.0, min(1.0, p)) / 3, 0.5, 0.85)
    return f"background-color:rgba({red * 255:.0f},{green * 255:.0f},{blue * 255:.0f},0.35)"


def _visible(token: str) -> str:
    """A token as it reads in a list of alternatives: spaces and line breaks made visible."""
    return repr(token)[1:-1].replace(" ", "␣") if token.strip() != token or not token else token


def _title(token: Token) -> str:
    lines = [f"{_visible(token.token)}: {percent(token.probability)}"]
    lines.extend(f"  {_visible(a.token)}: {percent(a.probability)}" for a in token.alternatives)
    return "\n".join(lines)


class TokenProbabilities:
    """The answer token by token, shaded by probability; displayable in IPython.

    ``entries`` are Ollama's ``logprobs`` dicts (``result.logprobs``).
    """

    def __init__(self, entries: Iterable[Mapping[str, Any]], *, model: str = "") -> None:
        self.tokens = tokens_from(entries)
        self.model = model

    def least_sure(self, count: int = 3) -> list[Token]:
        """The tokens the model was least sure of (where another choice was closest)."""
        return sorted((t for t in self.tokens if t.token.strip()), key=lambda t: t.probability)[:count]

    def summary(self) -> str:
        """One line: how many tokens, their mean probability, the closest calls."""
        if not self.tokens:
            return "no token probabilities"
        mean = sum(t.probability for t in self.tokens) / len(self.tokens)
        bits = [f"{len(self.tokens)} tokens", f"mean probability {percent(mean)}"]
        closest = self.least_sure()
        if closest:
            bits.append("least sure: " + ", ".join(f"{_visible(t.token)} {percent(t.probability)}" for t in closest))
        return " · ".join(bits)

    def _token_html(self, token: Token) -> str:
        text = html.escape(token.token)
        title = html.escape(_title(token), quote=True)
        style = shade(token.probability)
        if not token.alternatives:
            return f'<span class="ollama-magic-token" style="{style}" title="{title}">{text}</span>'
        rows = "<br>".join(
            f"{html.escape(_visible(a.token))} {percent(a.probability)}"
            if a.token != token.token
            else f"<b>{html.escape(_visible(a.token))} {percent(a.probability)}</b>"
            for a in token.alternatives
        )
        return (
            # inline-block: Chromium lays out a <details> as a block whatever its display
            # says, except inline-block; relative, so its alternatives float just under it.
            '<details class="ollama-magic-token" style="display:inline-block;vertical-align:top;position:relative">'
            f'<summary style="display:inline;list-style:none;cursor:pointer;{style}" title="{title}">{text}</summary>'
            f'<span style="{_ALTERNATIVES_STYLE}">{rows}</span></details>'
        )

    def html(self) -> str:
        body = "".join(self._token_html(t) for t in self.tokens)
        rows = max((len(t.alternatives) for t in self.tokens), default=0)
        room_em = rows * _ROOM_PER_ROW_EM + 0.6 - _LEGEND_EM  # + the box's padding and border
        room = f' style="padding-bottom:{room_em:.1f}em"' if room_em > 0 else ""
        legend = (
            "Each token is shaded by how likely the model found it: green sure, yellow unsure, red a close call. "
            "Hover over a token to see its alternatives; click it to keep them open. "
        )
        return (
            f'<div class="ollama-magic-logprobs"{room}><div style="{_CONTAINER_STYLE}">{body}</div>'
            f'<div class="ollama-magic-logprobs-legend" style="{_LEGEND_STYLE}">'
            f"{html.escape(legend + self.summary())}</div></div>"
        )

    def plain(self) -> str:
        """For terminals: each token followed by its probability, then the summary."""
        body = "".join(f"{t.token}⟨{percent(t.probability)}⟩" for t in self.tokens)
        return printable(f"{body}\n— token probabilities: {self.summary()}")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/plain": self.plain(), "text/html": self.html()}

    def __repr__(self) -> str:
        return f"TokenProbabilities({self.summary()})"
