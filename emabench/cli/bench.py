"""``emabench bench``: speed against references run side by side (the measurements are :mod:`emabench.bench`'s)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from emabench.cli.common import console, err_console, handles_errors, print_table
from emabench.errors import ConfigError


@handles_errors
def bench(
    which: Annotated[
        list[str] | None,
        typer.Argument(
            help="Sub-benchmarks to run: run, ema, sweep, scaling (the default: these four), tracking (a 40-run sweep "
            "with --track mlflow / tensorboard vs untracked; needs the extras)."
        ),
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Interleaved A/B repetitions per case.")] = 5,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="Skip the slowest cases (40 runs one process each; the largest stacks)."),
    ] = False,
    threads: Annotated[
        int, typer.Option("--threads", min=1, help="torch intra-op threads for the in-process cases (both sides).")
    ] = 1,
    out: Annotated[Path, typer.Option("--out", help="Folder for bench.csv and bench.md.", file_okay=False)] = Path(
        "runs"
    ),
) -> None:
    """Measure speed against references run side by side: the seed script (per epoch and whole process) and what a
    run costs besides training, torch's AveragedModel / ema-pytorch / the seed's EMA loop (one update, up to 25M
    parameters) and the update in the real loop vs a bare lerp_, 40-run sweeps vs one run (seed study, digits), and
    R stacked runs from R = 1 to 1024. Prints the table and writes bench.csv and bench.md. Ratios are ours /
    reference (lower is faster)."""
    import torch

    from emabench import bench as benchmarks
    from emabench.runs.atomic import atomic_write_text, make_folder

    chosen = which or list(benchmarks.DEFAULT)
    unknown = [w for w in chosen if w not in benchmarks.BENCHMARKS]
    if unknown:
        allowed = ", ".join(benchmarks.BENCHMARKS)
        raise ConfigError(f"bench: unknown sub-benchmark {unknown[0]!r} (allowed: {allowed})")
    make_folder(out)  # before minutes of measuring: a folder that cannot be made is a one-line error (exit code 3)
    torch.set_num_threads(threads)
    rows: list[Any] = []
    with err_console.status("benchmarking…"):
        if "run" in chosen:
            rows += benchmarks.bench_run(repeats)
        if "ema" in chosen:
            rows += benchmarks.bench_ema(repeats)
        if "sweep" in chosen:
            rows += benchmarks.bench_sweep(quick)
        if "scaling" in chosen:
            rows += benchmarks.bench_scaling(max(1, repeats // 2), quick)
        if "tracking" in chosen:
            rows += benchmarks.bench_tracking(1 if quick else min(repeats, 3))
    header = ["benchmark", "case", "ours", "reference", "unit", "ratio", "target"]
    body = [
        [r.benchmark, r.case, f"{r.ours:.4g}", f"{r.reference:.4g}", r.unit, f"{r.ratio:.3f}", r.target] for r in rows
    ]
    print_table(header, body, title=f"emabench bench — {benchmarks.machine()}")
    atomic_write_text(out / "bench.csv", benchmarks.to_csv(rows))
    atomic_write_text(out / "bench.md", benchmarks.to_markdown(rows, f"Machine: {benchmarks.machine()}."))
    console.print(f"Wrote {out / 'bench.csv'} and {out / 'bench.md'}")
