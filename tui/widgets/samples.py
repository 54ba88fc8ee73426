"""Sample generations of the latest evaluation: each held-out prompt, its reference and the answer."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.rundir.events import Sample

MAX_CHARS = 400


PROMPT_CHARS = 160  # the end of a long prompt (the question) matters most


def _clip(text: str, limit: int = MAX_CHARS, end: bool = False) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1) :] if end else text[: limit - 1] + "…"


def render_samples(samples: list[Sample]) -> Text:
    """The samples as prompt / reference / generated blocks (exact matches in green)."""
    if not samples:
        return Text("no sample generations yet: they come with the first evaluation", style="dim")
    out = Text(f"samples at step {samples[0].step}\n", style="bold")
    for s in samples:
        same = s.generated.strip() == s.reference.strip()
        out.append("prompt    ", "dim").append(_clip(s.prompt, PROMPT_CHARS, end=True) + "\n")
        out.append("reference ", "dim").append(_clip(s.reference) + "\n", "cyan")
        out.append("generated ", "dim")
        out.append((_clip(s.generated) or "(empty)") + "\n\n", "green" if same else "yellow")
    return out


class SamplesView(Static):
    """Shows the newest evaluation's sample generations beside their references."""

    def show(self, samples: list[Sample]) -> None:
        """Draw the samples of the latest step among `samples`."""
        if samples:
            last = samples[-1].step
            samples = sorted((s for s in samples if s.step == last), key=lambda s: s.index)
        self.update(render_samples(samples))
