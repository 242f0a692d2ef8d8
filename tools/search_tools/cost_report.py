"""`searchbar cost-report`: cost per million requests from measured throughput under the budget.

    searchbar cost-report out/sweep/query_embedding/quick-*/sweep.json --price-per-hour 0.096
    searchbar cost-report cpu/sweep.json gpu/sweep.json --price-per-hour 0.096 2.50 --labels cpu gpu

Each sweep JSON gives two rows, the default and the chosen configuration (the verification
medians where the sweep verified, else the sweep's best point under the budget).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

SECONDS_PER_HOUR = 3600.0


def cost_per_million(throughput_per_s: float, price_per_hour: float) -> float | None:
    """Dollars per million requests for one instance kept busy at ``throughput_per_s``."""
    if throughput_per_s <= 0:
        return None
    return price_per_hour / (throughput_per_s * SECONDS_PER_HOUR) * 1_000_000


@dataclass
class CostRow:
    run: str
    config: str
    throughput: float | None  # requests/s at the best load level within the budget
    p99_ms: float | None
    budget_ms: float
    price_per_hour: float

    @property
    def per_million(self) -> float | None:
        return cost_per_million(self.throughput, self.price_per_hour) if self.throughput else None


def rows_from_sweep(report: dict, label: str, price_per_hour: float) -> list[CostRow]:
    budget = report["budget_ms"]
    verification = report.get("verification")
    if verification:
        s = verification["summary"]
        return [
            CostRow(
                label,
                f"{name} ({report['chosen']})" if name == "chosen" else name,
                s[name]["throughput"],
                s[name]["p99_ms"],
                budget,
                price_per_hour,
            )
            for name in ("default", "chosen")
        ]
    by_name = {c["name"]: c for c in report["candidates"]}
    names = ["default"] + ([report["chosen"]] if report.get("chosen") not in (None, "default") else [])
    return [
        CostRow(
            label,
            name,
            (by_name[name]["best"] or {}).get("throughput"),
            (by_name[name]["best"] or {}).get("p99_ms"),
            budget,
            price_per_hour,
        )
        for name in names
    ]


def markdown_table(rows: Sequence[CostRow]) -> str:
    out = [
        "| run | configuration | req/s under p99 budget | p99 (ms) | budget (ms) | $/hour | $ per 1M requests |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        tput = f"{r.throughput:.1f}" if r.throughput else "none within budget"
        p99 = f"{r.p99_ms:.1f}" if r.p99_ms else "-"
        cost = f"{r.per_million:.4f}" if r.per_million is not None else "-"
        out.append(f"| {r.run} | {r.config} | {tput} | {p99} | {r.budget_ms:g} | {r.price_per_hour:g} | {cost} |")
    return "\n".join(out)


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="sweep.json files written by `searchbar sweep`")
    parser.add_argument(
        "--price-per-hour",
        type=float,
        nargs="+",
        required=True,
        help="instance price in $/hour, one for all runs or one per run",
    )
    parser.add_argument("--labels", nargs="+", help="a name per run (default: pipeline + preset + stamp)")
    parser.add_argument("--out", type=Path, default=Path("out/cost_report.md"), help="markdown file to write")


def run(args) -> int:
    prices = args.price_per_hour
    if len(prices) not in (1, len(args.runs)):
        raise SystemExit("give one --price-per-hour for all runs or one per run")
    if args.labels and len(args.labels) != len(args.runs):
        raise SystemExit("give one label per run")
    rows: list[CostRow] = []
    for i, path in enumerate(args.runs):
        report = json.loads(Path(path).read_text())
        label = (
            args.labels[i]
            if args.labels
            else f"{report['pipeline']} {report['preset']} {report.get('stamp', '')}".strip()
        )
        rows += rows_from_sweep(report, label, prices[i] if len(prices) > 1 else prices[0])
    table = markdown_table(rows)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Serving cost per million requests\n\nOne instance kept busy at the highest measured "
        "throughput whose p99 latency stays within the budget.\n\n" + table + "\n"
    )
    print(f"\nwrote {args.out}")
    return 0
