"""``emabench report``: compare raw vs averaged models across seeds from finished run folders (never re-trains)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from emabench.cli.common import (
    RunsDirOption,
    console,
    err_console,
    handles_errors,
    runs_dir_of,
    track_names,
)
from emabench.cli.tables import print_fitted
from emabench.errors import ConfigError, InputError, RunError

if TYPE_CHECKING:
    from emabench.report.collect import Collection
    from emabench.report.frames import Report
    from emabench.report.versus import Versus

REPORT_FORMATS = ("table", "markdown", "csv", "json")
VERDICT_STYLES = {  # terminal label and colour of each verdict
    "better": ("better", "bold green"),
    "worse": ("worse", "bold red"),
    "equivalent": ("equivalent", "bold cyan"),
    "inconclusive": ("open", "yellow"),
    "too few seeds": ("too few", "magenta"),
}

PathsArgument = Annotated[
    list[Path] | None,
    typer.Argument(help="Run or sweep folders, one or many (default: everything under --runs-dir)."),
]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Folder for the report files (default: the one folder given, else --runs-dir)."),
]
ByOption = Annotated[
    list[str] | None,
    typer.Option(
        "--by",
        metavar="KEY",
        help="Group by this config key (repeatable): --by ema.beta (default: the keys that vary, and ema.beta).",
    ),
]
WhereOption = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        metavar="KEY=VALUE",
        help="Only runs whose config has KEY=VALUE, value parsed as YAML (repeatable): --where data.noise=0.1.",
    ),
]
FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        help="table: a coloured table for people; markdown, csv or json: print only that to stdout, for scripts "
        "(the files are written either way).",
    ),
]
VersusOption = Annotated[
    str | None,
    typer.Option(
        "--versus",
        metavar="KEY=VALUE",
        help="Also compare each other value of the config key KEY with VALUE (parsed as YAML), for raw and each "
        "averaged model, paired by seed and by the other group keys: --versus train.teacher.weight=0.0. Its "
        "primary rows are decided as a family of their own, by the same rule; writes versus.csv.",
    ),
]
PrimaryOption = Annotated[
    str | None,
    typer.Option(
        "--primary",
        metavar="COLUMN",
        help="The measure the verdicts answer about: a final metric (accuracy, mse, r2, …), a best-epoch one "
        "(best_accuracy) or val_loss_std (default: the config's report.primary, else the task's: final accuracy or "
        "MSE). With a held-out test set every measure is taken on it, and the prefix names the protocol: accuracy "
        "(final vs final), early_stopped_accuracy (each model at its best validation epoch vs the baseline's final), "
        "best_accuracy (best vs best); loss is the NLL.",
    ),
]
MarginOption = Annotated[
    str | None,
    typer.Option(
        "--margin",
        metavar="M",
        help="Equivalence margin: a difference this small does not matter; a number in the metric's units (0.005) "
        "or a percentage of the baseline's mean (1%) (default: the config's report.margin, else the task's).",
    ),
]
BaselineOption = Annotated[
    str | None,
    typer.Option(
        "--baseline",
        metavar="MODEL",
        help="Compare every model with this one, paired by seed (default raw): --baseline swa, --baseline ema.",
    ),
]
ReportTrackOption = Annotated[
    list[str] | None,
    typer.Option(
        "--track",
        metavar="mlflow",
        help="Also put the report in MLflow: its files as artifacts of the sweep's run, each comparison's verdict, "
        "difference and interval as its tags and metrics and on the group's runs (copying runs MLflow lacks). "
        "`MLFLOW_TRACKING_URI`, else the runs' RUNS_DIR/mlflow.db.",
    ),
]
BurnInOption = Annotated[
    int,
    typer.Option("--burn-in", metavar="N", help="Stability: std of the validation loss after the first N epochs."),
]


@handles_errors
def report(
    paths: PathsArgument = None,
    runs_dir: RunsDirOption = Path("runs"),
    out: OutOption = None,
    by: ByOption = None,
    where: WhereOption = None,
    format_: FormatOption = "table",
    burn_in: BurnInOption = 9,
    versus: VersusOption = None,
    primary: PrimaryOption = None,
    margin: MarginOption = None,
    baseline: BaselineOption = None,
    track: ReportTrackOption = None,
) -> None:
    """Compare each model with raw (or --baseline) across seeds, from finished run folders (never re-trains).

    Per group of runs that differ only in their seed (e.g. per beta), each
    model vs the baseline, paired by seed. On the primary measure (the task's:
    final accuracy or MSE; --primary) a verdict: better, worse, equivalent
    (within --margin), inconclusive (with the seeds that would settle it) or
    too few seeds, the primary comparisons decided as one family whose chance
    of any wrong claim is at most 5%. Every metric (final epoch, best epoch)
    and the stability of the validation loss are described too, unadjusted:
    mean ± std and 95% CI, the paired difference with its CI, p-values, wins;
    the decay actually reached; for the seed study, the blog's published run
    beside our seeds. Runs of different tasks are never compared; the same
    config found in two folders counts once.

    --versus KEY=VALUE asks whether a setting helps: each other value of KEY
    against VALUE, for every model, paired by seed and by the other group
    keys, with the same statistics (a family of its own).

    Runs of several studies (sweep folders, single runs of other configs)
    are reported study by study, each with its own groups and verdicts.

    Writes report.md, report.html (one self-contained file), report.csv,
    comparison.csv, per_run.csv, versus.csv (with --versus) and fig_*.png.
    """
    from emabench.report import files
    from emabench.report.frames import build_studies
    from emabench.runs.sweep_folder import REPORT_CSV, REPORT_MD

    if format_ not in REPORT_FORMATS:
        raise ConfigError(f"--format: {format_!r} is not one of {', '.join(REPORT_FORMATS)}")
    names = track_names(track, [])
    if set(names) - {"mlflow"}:
        raise ConfigError("report --track: mlflow only (TensorBoard shows the runs' curves: sweep --track tensorboard)")
    roots = paths or [runs_dir]
    collection = _collect(roots, where or [])
    studies = build_studies(
        collection,
        versus,
        by=by or None,
        burn_in=burn_in,
        sources=[str(r) for r in roots],
        primary=primary,
        margin=margin,
        baseline=baseline,
    )
    rendered = files.render_studies(studies)
    written = files.write_files(rendered, out or (roots[0] if len(roots) == 1 else runs_dir))
    for study in studies if names else []:  # each study to its sweep's MLflow run (or a run of its own)
        _track_report(study.report, files.to_json(study.report), written)
    if format_ == "table":
        for study in studies:
            if study.label:
                console.rule(f"[bold]Study: {escape(study.label)}[/]", align="left")
            print_report(study.report)
        if (collection.runs["sweep_mode"] == "shadows").any():
            console.print(
                "Shadow mode: the ema_<beta> models are shadows of one training trajectory per seed (sweep "
                "--shadows), not runs of their own.",
                highlight=False,
                markup=False,
            )
        console.print(f"Wrote {written[2]} and {len(written) - 1} more files in {written[0].parent}", highlight=False)
        return
    text = {"markdown": rendered[REPORT_MD], "csv": rendered[REPORT_CSV], "json": files.studies_json(studies)}[format_]
    sys.stdout.write(str(text))
    err_console.print(f"wrote {len(written)} files in {written[0].parent}", highlight=False)


def _collect(roots: list[Path], where: list[str]) -> Collection:
    """The finished runs under ``roots`` (skipped folders named on stderr); an :class:`InputError` if there are none."""
    from emabench.report.collect import collect

    collection = collect(roots, where)
    for folder, status in collection.skipped:
        err_console.print(f"skipped {folder.path}: {status}", highlight=False, soft_wrap=True)
    if collection.skipped:
        kinds = Counter(status.split(":")[0] for _, status in collection.skipped)
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        err_console.print(f"{len(collection.skipped)} run folder(s) skipped ({counts}); the report covers the rest.")
    for kept, dropped in collection.duplicates:
        err_console.print(
            f"same config found twice: using {kept.path}, not {dropped.path}", highlight=False, soft_wrap=True
        )
    if collection.runs.empty:
        matching = f" matching {' '.join(f'--where {w}' for w in where)}" if where else ""
        raise InputError(f"no finished runs under {', '.join(map(str, roots))}{matching}")
    return collection


def print_report(result: Report) -> None:
    """The report's verdict tables (one per task), verdicts coloured, fitted to the terminal, with their legend."""
    from emabench.report.terminal import display_tables
    from emabench.report.verdicts import open_summary

    labels = {verdict: label for verdict, (label, _) in VERDICT_STYLES.items()}
    styles = {label: style for label, style in VERDICT_STYLES.values()}
    for table in display_tables(result):
        rows = [[labels.get(cell, cell) for cell in row] for row in table.rows]
        print_fitted(console, table.header, rows, title=table.title, keep=2, style_of=styles.get)
    family = result.family
    legend = ", ".join(
        f"[{style}]{label}[/]" + (f" = {v}" if label != v else "") for v, (label, style) in VERDICT_STYLES.items()
    )
    sequential = (
        f" in looks at {', '.join(map(str, result.looks.seeds))} of at most {result.looks.max_seeds} seeds"
        if result.looks is not None
        else ""
    )
    console.print(
        f"Verdicts: {legend}. {family.description}; decided{sequential} with the chance of any wrong claim among "
        f"them at most {result.alpha:g}; everything else in the files is exploratory.",
        highlight=False,
    )
    settle = open_summary(result.comparison) if len(result.comparison) else ""
    if settle:
        console.print(settle, highlight=False)
    if result.versus is not None:
        _print_versus_family(result.versus, result.alpha)


def _print_versus_family(versus: Versus, alpha: float) -> None:
    """Which family the versus verdicts were decided in."""
    family = versus.family
    console.print(
        f"{versus.title}: {family.description}; over both families the chance of any wrong claim is below "
        f"{2 * alpha:g}.",
        highlight=False,
    )


def _track_report(result: Report, document: str, written: list[Path]) -> None:
    """``--track mlflow``: the report in MLflow, into the store of the runs' runs directory (exit code 3 if the copy
    stops midway; the report files are written)."""
    import json

    from emabench.tracking.mlflow_report import report_to_mlflow

    columns = ["run_path", "task", *result.by]
    runs = result.per_run[[c for c in columns if c in result.per_run.columns]].drop_duplicates()
    records = runs.to_dict("records")
    with err_console.status("copying the report to MLflow…"):
        uri, failure = report_to_mlflow(
            runs_dir_of(Path(records[0]["run_path"])), json.loads(document), written, records
        )
    if failure:
        raise RunError(f"tracking stopped: {failure}; the report files are written, re-run the report to copy it again")
    err_console.print(f"report copied to MLflow ({uri})", highlight=False, soft_wrap=True)
