"""Run summary of a video: people per voted label and compliance over time.

A person is a track (see track.py), after `join_retracked` has merged the
tracks of one person the tracker lost for a moment. Compliance in a time bucket is the share
of the people seen in it whose voted label is `mask`, among those with a
label (`unknown` tracks are counted but left out of the share: they had too
little evidence either way). Pure functions, except `plot_compliance`,
which writes a PNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maskwatch.track import UNKNOWN, Track, TrackConfig, join_retracked
from maskwatch.types import LABELS


def people_per_label(tracks: Sequence[Track]) -> dict[str, int]:
    out = dict.fromkeys((*LABELS, UNKNOWN), 0)
    for t in tracks:
        out[t.label] += 1
    return out


def compliance(counts: dict[str, int]) -> float | None:
    """Share of labelled people properly masked; None when nobody has a label."""
    labelled = sum(counts[k] for k in LABELS)
    return counts["mask"] / labelled if labelled else None


def compliance_over_time(tracks: Sequence[Track], bucket_seconds: float = 60.0,
                         duration: float | None = None) -> list[dict[str, Any]]:
    """One row per bucket: its start (s), the people seen in it per label, and
    compliance. A track counts in every bucket its time span touches."""
    end = max([t.last_time for t in tracks] + [duration or 0.0])
    n = max(1, math.floor(end / bucket_seconds) + 1) if tracks or duration else 0
    rows = []
    for k in range(n):
        lo, hi = k * bucket_seconds, (k + 1) * bucket_seconds
        rows.append(bucket_row(round(lo, 3), people_per_label([t for t in tracks if t.first_time < hi
                                                               and t.last_time >= lo])))
    return rows


def bucket_row(start: float, counts: dict[str, int]) -> dict[str, Any]:
    """One compliance-over-time row: the bucket's start, people seen per label, compliance."""
    share = compliance(counts)
    return {"start": start, "people": sum(counts.values()), **counts,
            "compliance": None if share is None else round(share, 4)}


def summarize(tracks: Sequence[Track], bucket_seconds: float = 60.0,
              duration: float | None = None, config: TrackConfig | None = None) -> dict[str, Any]:
    people = join_retracked(tracks, config or TrackConfig())
    counts = people_per_label(people)
    share = compliance(counts)
    return {
        "tracks": len(tracks),
        "people": sum(counts.values()),
        "people_per_label": counts,
        "compliance": None if share is None else round(share, 4),
        "bucket_seconds": bucket_seconds,
        "compliance_over_time": compliance_over_time(people, bucket_seconds, duration),
    }


def plot_compliance(rows: Sequence[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Compliance per bucket (line) over people seen (bars); writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["start"] / 60 for r in rows]
    width = (rows[1]["start"] - rows[0]["start"]) / 60 if len(rows) > 1 else 1.0
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    try:
        ax2 = ax.twinx()
        ax2.bar(minutes, [r["people"] for r in rows], width=width * 0.8, align="edge", color="0.85",
                label="people seen")
        ax2.set_ylabel("people seen")
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        shares = [math.nan if r["compliance"] is None else 100 * r["compliance"] for r in rows]
        ax.plot([m + width / 2 for m in minutes], shares, "o-", color="tab:green", label="properly masked")
        ax.set_ylim(0, 105)
        ax.set_ylabel("properly masked (%)")
        ax.set_xlabel("minutes")
        ax.set_title(title or "Mask compliance over time")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
