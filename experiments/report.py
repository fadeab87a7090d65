"""Canary/experiment report: markdown and a self-contained HTML page with plots over time
(challenger weight, watch-through per variant, p99 latency, error rate) and the decision."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _evalue(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return "inf" if math.isinf(x) else f"{x:.3g}"


def _series(windows: list[dict], scope: str, variant: str, key: str) -> list[float]:
    out = []
    for w in windows:
        v = (w.get(scope) or {}).get(variant, {}).get(key)
        out.append(float("nan") if v is None else float(v))
    return out


def _plot(result: dict, path: Path) -> Path:
    windows = result["windows"]
    xs = [w["index"] for w in windows]
    champion, challenger = result["champion"], result["challenger"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    ax = axes[0][0]
    # the weight during each window, then the weight the last decision left
    ax.step([*xs, len(xs)], [*(w["challenger_percent"] for w in windows), result["final_percent"]],
            where="post", color="tab:red")
    ax.set_title("challenger weight (%) during each window")
    ax.set_ylim(-5, 105)
    for ax, (scope, key, title) in zip(
        (axes[0][1], axes[1][0], axes[1][1]),
        (("cumulative", "watch_through", "watch-through (cumulative, matured)"),
         ("window", "p99_ms", "p99 latency per window (ms)"),
         ("window", "error_rate", "error rate per window")), strict=True,
    ):
        for variant, color in ((champion, "tab:blue"), (challenger, "tab:red")):
            ax.plot(xs, _series(windows, scope, variant, key), marker="o", color=color, label=variant)
        ax.set_title(title)
        ax.legend(loc="best", fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("analysis window")
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"{result['experiment']}: {result['outcome']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def render_markdown(result: dict, plot_name: str) -> str:
    champion, challenger = result["champion"], result["challenger"]
    lines = [
        f"# Experiment `{result['experiment']}`: {challenger} vs {champion}",
        "",
        f"**Decision: {result['outcome']}** (challenger at {result['final_percent']} % at the end); "
        f"started {result['started_at']}, finished {result['finished_at'] or '–'}.",
        "",
        f"![timeline]({plot_name})",
        "",
        "## Analysis windows",
        "",
        "| # | weight % | decision | requests ch/cn | errors ch/cn | p99 ms ch/cn "
        "| watch-through ch/cn (cum.) | lift CI | SRM p | reasons |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in result["windows"]:
        win, cum = w["window"], w["cumulative"]
        c, n = win.get(champion, {}), win.get(challenger, {})
        cc, cn = cum.get(champion, {}), cum.get(challenger, {})
        lift = w.get("lift")
        lift_txt = f"[{lift['ci_low']:+.3f}, {lift['ci_high']:+.3f}]" if lift else "–"
        lines.append(
            f"| {w['index']} | {w['challenger_percent']} | {w['decision']} "
            f"| {c.get('requests', 0)}/{n.get('requests', 0)} | {c.get('errors', 0)}/{n.get('errors', 0)} "
            f"| {_fmt(c.get('p99_ms'), 0)}/{_fmt(n.get('p99_ms'), 0)} "
            f"| {_fmt(cc.get('watch_through'))}/{_fmt(cn.get('watch_through'))} "
            f"| {lift_txt} | {_fmt(w.get('srm_p_value'))} | {'; '.join(w['reasons'])} |"
        )
    if result["windows"]:
        lines += ["", "## Inference per window (challenger - champion)", "",
                  "Watch-through; as guardrails the error rate and the mean latency (sequential);"
                  " cost per play (a fixed-horizon interval: reported, not decided on). Unit: "
                  "users (delta method; mixture SPRT confidence sequence when sequential, valid "
                  "at every look), requests for the old fixed interval. MDE: the half-width, the "
                  "smallest difference this sample could tell from zero.", "",
                  "| # | metric | unit | users ch/cn | diff | interval | p | e-value | MDE | SRM "
                  "| decision: why |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for w in result["windows"]:
            srm = w.get("srm_p_value")
            srm_txt = "–" if srm is None else ("mismatch" if srm < 0.001 else "ok") + \
                f" (p {_fmt(srm)})"
            why = f"{w['decision']}: {'; '.join(w['reasons'])}"
            rows = [("watch-through", w.get("lift"))]
            for metric, key in (("error rate", "errors"), ("mean latency (ms)", "latency"),
                                ("cost per play", "cost")):
                if w.get(key):
                    rows.append((metric, w[key]))
            for metric, diff in rows:
                if not diff:
                    lines.append(f"| {w['index']} | {metric} | – | – | – | – | – | – | – "
                                 f"| {srm_txt} | {why} |")
                    continue
                sequential = bool(diff.get("sequential"))
                unit = "users" if sequential else "requests"
                users = (f"{diff.get('treatment_users', '–')}/{diff.get('control_users', '–')}"
                         if sequential else "–")
                mde = (diff["ci_high"] - diff["ci_low"]) / 2
                lines.append(
                    f"| {w['index']} | {metric} | {unit} | {users} | {diff['diff']:+.3f} "
                    f"| [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}] "
                    f"| {_fmt(diff.get('p_value'))} | {_evalue(diff.get('e_value'))} | {mde:.3f} "
                    f"| {srm_txt} | {why} |")
        last = result["windows"][-1]["cumulative"]
        lines += ["", "## Final per-variant metrics (since the canary started)", "",
                  "| variant | requests | error rate | matured | watch-through | minutes/request "
                  "| cost/play | p50 ms | p99 ms |", "|---|---|---|---|---|---|---|---|---|"]
        for v in (champion, challenger):
            m = last.get(v, {})
            lines.append(
                f"| {v} | {m.get('requests', 0)} | {_fmt(m.get('error_rate'))} | {m.get('matured', 0)} "
                f"| {_fmt(m.get('watch_through'))} | {_fmt(m.get('minutes_per_request'), 2)} "
                f"| {_fmt(m.get('cost_per_play'), 2)} | {_fmt(m.get('p50_ms'), 0)} | {_fmt(m.get('p99_ms'), 0)} |")
    lines += ["", "## Weights history (event time)", ""]
    for h in result.get("weights_history", []):
        lines.append(f"- from {h['since']}: " + ", ".join(f"{v} {w:g} %" for v, w in h["weights"]))
    lines += ["", "## Policy", "", "```json", json.dumps(result.get("policy", {}), indent=1), "```", ""]
    return "\n".join(lines)


def _md_table_to_html(md: str, image_b64: str, plot_name: str) -> str:
    """A small markdown subset (headings, tables, images, code, paragraphs) to HTML."""
    out, in_table, in_code = [], False, False
    for line in md.splitlines():
        if line.startswith("```"):
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            out.append(html.escape(line))
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= {"-"}:
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
                out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
            else:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            out.append(f'<img alt="{plot_name}" src="data:image/png;base64,{image_b64}">')
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{html.escape(line).replace('**', '')}</p>")
    if in_table:
        out.append("</table>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}")
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>" \
           + "\n".join(out) + "</body></html>\n"


def write_report(state_path: Path | str, out_dir: Path | str) -> list[Path]:
    """Write ``report.md``, ``report.html`` and ``timeline.png`` from a canary state file."""
    result = json.loads(Path(state_path).read_text())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = _plot(result, out / "timeline.png")
    md = render_markdown(result, png.name)
    (out / "report.md").write_text(md)
    b64 = base64.b64encode(png.read_bytes()).decode()
    (out / "report.html").write_text(_md_table_to_html(md, b64, png.name))
    return [out / "report.md", out / "report.html", png]
