"""Draw the charts of docs/benchmarks.md from the JSON results of bench_decode and bench_bulk.

matplotlib is needed here only, never by close-async itself:

    .venv/bin/pip install matplotlib
    python benchmarks/plot.py    # reads benchmarks/results/{decode,bulk}.json, writes docs/*.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
HIGHLIGHT = {
    "close-async": "#1f6feb",
    "close-async + .custom": "#79a8f0",
    "close-async, fresh": "#a9c7f5",
}
CEILING_COLOR = "#2da44e"
OTHER = "#8c959f"
DROPS = "#d4a72c"  # decoders that lose custom fields


def color(name: str, keeps_custom: bool) -> str:
    if name in HIGHLIGHT:
        return HIGHLIGHT[name]
    if name.startswith("ceiling"):
        return CEILING_COLOR
    return OTHER if keeps_custom else DROPS


def plot_decode(plt: Any, report: dict[str, Any], out: Path) -> None:
    # One panel per payload, stacked: drawn about 760 px wide, the width of the docs page, so
    # that the labels are read at their own size rather than scaled down by half.
    payloads = report["payloads"]
    fig, axes = plt.subplots(
        len(payloads), 1, figsize=(6.9, 3.3 * len(payloads) + 1.3), sharex=True, squeeze=False
    )
    right = 1.35
    for ax, (name, result) in zip(axes[:, 0], payloads.items(), strict=True):
        decoders = list(result["decoders"].items())
        labels = [d for d, _ in decoders]
        # Against the ceiling that declares the organization's keys: the target's bar.
        ratios = [r["ratio_to_org_ceiling"] for _, r in decoders]
        low = [
            r["ratio_to_org_ceiling"] - (r["org_ratio_p25"] or r["ratio_to_org_ceiling"])
            for _, r in decoders
        ]
        high = [
            (r["org_ratio_p75"] or r["ratio_to_org_ceiling"]) - r["ratio_to_org_ceiling"]
            for _, r in decoders
        ]
        y = range(len(labels))
        ax.barh(
            y,
            ratios,
            xerr=[low, high],
            color=[color(d, r["keeps_custom"]) for d, r in decoders],
            error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#57606a"},
        )
        for i, value in enumerate(ratios):
            ax.text(value + high[i] + 0.02, i, f"{value:.2f}", va="center", fontsize=8)
        ax.axvline(1.0, color=CEILING_COLOR, linewidth=1, linestyle="--")
        ax.axvline(0.9, color="#cf222e", linewidth=1, linestyle=":")
        ax.set_yticks(list(y), labels, fontsize=9)
        for tick in ax.get_yticklabels():
            if tick.get_text() in HIGHLIGHT:
                tick.set_fontweight("bold")
        ax.invert_yaxis()
        right = max(right, max(r + h for r, h in zip(ratios, high, strict=True)) + 0.15)
        custom = result["custom_fields"]
        ax.set_title(
            f"{name}: {result['bytes']} bytes, {custom} custom fields", fontsize=10, loc="left"
        )
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].set_xlim(0, right)  # shared: one scale for the three payloads
    axes[-1, 0].set_xlabel("speed relative to the ceiling (higher is faster)", fontsize=9)
    machine = report["machine"]
    fig.suptitle(
        "Decoding one Opportunity, relative to the ceiling: a Struct declaring\n"
        "every key of the payload and the organization's 20 custom keys\n"
        f"median of {report['params']['rounds']} interleaved rounds, bars: p25-p75; "
        f"Python {machine['python']}, {machine['cpu_count']} CPUs, msgspec "
        f"{machine['versions']['msgspec']}\n"
        "yellow: drops custom fields; dashed: the ceiling; dotted: 0.9 of it",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_bulk(plt: Any, report: dict[str, Any], out: Path) -> None:
    results = report["results"]
    names = list(results)
    medians = [results[n]["creates_per_s"] for n in names]
    low = [results[n]["creates_per_s"] - results[n]["min"] for n in names]
    high = [results[n]["max"] - results[n]["creates_per_s"] for n in names]
    fig, ax = plt.subplots(figsize=(8, 2.6))
    colors = [HIGHLIGHT.get(n, CEILING_COLOR if n == "raw aiohttp" else OTHER) for n in names]
    ax.barh(
        range(len(names)),
        medians,
        xerr=[low, high],
        color=colors,
        error_kw={"elinewidth": 0.8, "capsize": 3, "ecolor": "#57606a"},
    )
    for i, name in enumerate(names):
        paired = results[name].get("paired_ratio_to_raw_aiohttp")
        ratio = paired if paired is not None else results[name]["ratio_to_raw_aiohttp"]
        label = f"{medians[i]:,.0f}/s ({ratio:.2f}x raw aiohttp)"
        ax.text(results[name]["max"] + max(medians) * 0.02, i, label, va="center", fontsize=9)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, max(results[n]["max"] for n in names) * 1.5)
    ax.set_xlabel("creates per second (median over rounds; bars: min-max)")
    params = report["params"]
    ax.set_title(
        f"{params['n']} creates per round against FakeCloseServer (no rate limit, same process)",
        fontsize=10,
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--decode", type=Path, default=RESULTS / "decode.json")
    parser.add_argument("--bulk", type=Path, default=RESULTS / "bulk.json")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the PNGs go")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "plot.py needs matplotlib, which close-async does not depend on:\n"
            "    .venv/bin/pip install matplotlib",
            file=sys.stderr,
        )
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    drawn = 0
    for path, draw, name in (
        (args.decode, plot_decode, "benchmarks-decode.png"),
        (args.bulk, plot_bulk, "benchmarks-bulk.png"),
    ):
        if not path.is_file():
            print(f"skipped {name}: no {path} (run the benchmark first)", file=sys.stderr)
            continue
        report = json.loads(path.read_text(encoding="utf-8"))
        if report["params"].get("quick"):
            print(f"note: {path} comes from a --quick run; figures are rough", file=sys.stderr)
        draw(plt, report, args.out / name)
        print(f"wrote {args.out / name}")
        drawn += 1
    return 0 if drawn else 1


if __name__ == "__main__":
    sys.exit(main())
