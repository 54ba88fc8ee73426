"""Sample generations of the latest evaluation: each held-out prompt, its reference and the answer."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.rundir.events import Sample
from tui.format import clip

MAX_CHARS = 400


PROMPT_CHARS = 160  # the end of a long prompt (the question) matters most


def render_samples(samples: list[Sample]) -> Text:
    """The samples as prompt / reference / generated blocks (exact matches in green)."""
    if not samples:
        return Text("no sample generations yet: they come with the first evaluation", style="dim")
    out = Text(f"samples at step {samples[0].step}\n", style="bold")
    for s in samples:
        same = s.generated.strip() == s.reference.strip()
        out.append("prompt    ", "dim").append(
            clip(s.prompt.strip(), PROMPT_CHARS, from_end=True) + "\n"
        )
        out.append("reference ", "dim").append(clip(s.reference.strip(), MAX_CHARS) + "\n", "cyan")
        out.append("generated ", "dim")
        out.append(
            (clip(s.generated.strip(), MAX_CHARS) or "(empty)") + "\n\n",
            "green" if same else "yellow",
        )
    return out


class SamplesView(Static):
    """Shows the newest evaluation's sample generations beside their references."""

    def show(self, samples: list[Sample]) -> None:
        """Draw the samples of the latest step among `samples`."""
        if samples:
            last = samples[-1].step
            samples = sorted((s for s in samples if s.step == last), key=lambda s: s.index)
        self.update(render_samples(samples))
