"""Records, ratios to hand-written JAX, and the JSON and Markdown outputs.

A :class:`Record` is one figure: a workload, a framework and its variant
(how it trains), a metric ("per step", "compile", ...), the median over
repeats, its unit and whether lower or higher is better. A record whose
``figure`` is None says why that framework was not measured (``note``).

``ratio`` is always ``figure / reference figure``: the same metric of the
reference variant of hand-written JAX, measured in the same run. For a time
a ratio of 2.0 means twice as slow; for a rate (steps/s) 0.5 means half as fast.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Record:
    workload: str
    framework: str
    variant: str | None = None
    metric: str | None = None
    figure: float | None = None
    unit: str = ""
    better: str = "lower"  # "lower", "higher" or "" (a value, not a cost)
    ratio: float | None = None
    reference: str | None = None
    samples: list[float] = field(default_factory=list)
    note: str = ""


Reference = Callable[[Record], tuple[str, str]]


@dataclass
class Results:
    records: list[Record] = field(default_factory=list)

    def add(self, record: Record) -> Record:
        self.records.append(record)
        return record

    def skip(self, workload: str, framework: str, note: str, variant: str | None = None) -> None:
        self.records.append(Record(workload, framework, variant, note=note))

    def compute_ratios(self, references: dict[str, Reference]) -> None:
        """Fills ``ratio`` and ``reference`` of every measured record."""
        index = {
            (r.workload, r.framework, r.variant, r.metric): r
            for r in self.records
            if r.figure is not None
        }
        for r in self.records:
            if r.figure is None or r.workload not in references:
                continue
            framework, variant = references[r.workload](r)
            r.reference = f"{framework} {variant}"
            ref = index.get((r.workload, framework, variant, r.metric))
            if ref is not None and ref.figure and math.isfinite(ref.figure):
                r.ratio = r.figure / ref.figure

    def to_json(self, meta: dict[str, Any]) -> str:
        return json.dumps(
            {"meta": meta, "records": [asdict(r) for r in self.records]},
            indent=1,
            ensure_ascii=False,
        )


def format_figure(value: float) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _cell(record: Record) -> str:
    text = format_figure(record.figure) if record.figure is not None else "—"
    if record.ratio is not None:
        text += f" ({record.ratio:.2f}×)"
    return text


def markdown(results: Results, workloads: list[tuple[str, str, str]], frameworks: list[str]) -> str:
    """One table per workload: a row per framework variant, a column per metric.

    ``workloads`` lists ``(name, title, reference description)`` in order.
    """
    lines: list[str] = []
    for name, title, reference in workloads:
        records = [r for r in results.records if r.workload == name]
        if not records:
            continue
        metrics: list[tuple[str, str]] = []
        for r in records:
            if r.metric is not None and (r.metric, r.unit) not in metrics:
                metrics.append((r.metric, r.unit))
        lines += [f"### {name}: {title}", "", f"Ratios are to {reference}.", ""]
        header = ["framework", "variant", *[f"{m} ({u})" if u else m for m, u in metrics], "note"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        rows: dict[tuple[str, str | None], dict[str, Any]] = {}
        for r in records:
            row = rows.setdefault((r.framework, r.variant), {"notes": []})
            if r.metric is not None:
                row[r.metric] = r
            if r.note and r.note not in row["notes"]:
                row["notes"].append(r.note)
        order = {f: i for i, f in enumerate(frameworks)}
        for (framework, variant), row in sorted(
            rows.items(), key=lambda item: order.get(item[0][0], len(order))
        ):
            cells = [framework, variant or ""]
            cells += [_cell(row[m]) if m in row else "" for m, _ in metrics]
            cells.append("; ".join(row["notes"]))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
