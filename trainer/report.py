"""The comparison report: a markdown + JSON table and PNG plots, written next to the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = [
    ("model", "model"), ("precision@10", "P@10"), ("recall@10", "R@10"), ("ndcg@10", "nDCG@10"),
    ("map@10", "MAP@10"), ("precision@20", "P@20"), ("ndcg@20", "nDCG@20"),
    ("coverage@10", "cov@10"), ("fit_s", "fit s"), ("batch_ms_per_user", "batch ms/user"),
    ("single_ms_per_user", "single ms/user"), ("memory_bytes", "memory B"), ("disk_bytes", "disk B"),
]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(t for _, t in COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [head, sep]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k, "")) for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def write_report(directory: Path | str, comparison: dict[str, Any], plots: bool = True) -> Path:
    """``comparison``: {"rows": [per-candidate flat dict], "subpopulations": {model: {group:
    metrics}}, "cold_start": {...}, "selected": name, "split": {...}, "tuning": {...}}."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "comparison.json").write_text(json.dumps(comparison, indent=2, sort_keys=True, default=str))
    rows = comparison["rows"]
    md = [f"# Candidate comparison ({comparison.get('snapshot', '')})", "",
          f"Selected: **{comparison.get('selected')}** by warm {comparison.get('select_metric')}.",
          f"Split: {json.dumps(comparison.get('split', {}), default=str)}", "",
          "## Warm users (seen before T), items seen before T excluded", "", markdown_table(rows), ""]
    subs = comparison.get("subpopulations", {})
    if subs:
        groups = sorted({g for per in subs.values() for g in per})
        md += ["## nDCG@10 by subpopulation (users)", "",
               "| model | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
        for model, per in subs.items():
            md.append(f"| {model} | " + " | ".join(
                f"{per[g].get('ndcg@10', float('nan')):.4f} ({per[g].get('users', 0)})"
                if g in per else "" for g in groups) + " |")
        md.append("")
    if comparison.get("cold_start"):
        md += ["## New users (first seen after T)", "", "```",
               json.dumps(comparison["cold_start"], indent=2, sort_keys=True), "```", ""]
    if comparison.get("tuning"):
        md += ["## Tuning (validation split carved from training events)", "", "```",
               json.dumps(comparison["tuning"], indent=2, sort_keys=True, default=str), "```", ""]
    (d / "report.md").write_text("\n".join(md))
    if plots and rows:
        _plots(d, rows, subs)
    return d


def _plots(d: Path, rows: list[dict[str, Any]], subs: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["model"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.2
    for j, metric in enumerate(("precision@10", "recall@10", "ndcg@10", "map@10")):
        ax.bar([i + j * width for i in range(len(rows))], [r.get(metric, 0) for r in rows],
               width, label=metric)
    ax.set_xticks([i + 1.5 * width for i in range(len(rows))], names)
    ax.set_title("Warm-user quality")
    ax.legend()
    fig.tight_layout()
    fig.savefig(d / "quality.png", dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, (key, title) in zip(axes, (("fit_s", "training time (s)"),
                                       ("batch_ms_per_user", "inference ms/user (batch | single)"),
                                       ("disk_bytes", "size (bytes, disk | memory)")), strict=True):
        ax.bar(names, [r.get(key, 0) for r in rows], alpha=0.8)
        if key == "batch_ms_per_user":
            ax.plot(names, [r.get("single_ms_per_user", 0) for r in rows], "o", color="k")
        if key == "disk_bytes":
            ax.plot(names, [r.get("memory_bytes", 0) for r in rows], "o", color="k")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(d / "cost.png", dpi=100)
    plt.close(fig)

    if subs:
        groups = sorted({g for per in subs.values() for g in per})
        fig, ax = plt.subplots(figsize=(max(6, len(groups) * 0.9), 4))
        width = 0.8 / max(len(subs), 1)
        for j, (model, per) in enumerate(subs.items()):
            ax.bar([i + j * width for i in range(len(groups))],
                   [per.get(g, {}).get("ndcg@10", 0) for g in groups], width, label=model)
        ax.set_xticks([i + 0.4 for i in range(len(groups))], groups, rotation=30)
        ax.set_title("nDCG@10 by subpopulation")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(d / "subpopulations.png", dpi=100)
        plt.close(fig)
