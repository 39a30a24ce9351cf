"""The report's files: rendered from a :class:`~emabench.report.frames.Report` (:func:`render_files`, no I/O) and
written atomically into a folder (:func:`write_files`); the tables as JSON for scripts (:func:`to_json`). The file
names are :mod:`emabench.runs.sweep_folder`'s.

Files written into the report folder:

The metrics are each group's task's (``M`` below: regression mse, mae, r2; classification accuracy, f1_macro, ece).
With a held-out test set each is also measured there (:mod:`emabench.report.specs`): the compared columns ``C``
below then include ``test_M`` (final vs final), ``early_stopped_test_M`` (each model at its best validation epoch vs
the baseline's final weights), ``best_test_M`` (best vs best), and for classification the same of ``loss`` (the
NLL); the validation set's ``M`` and ``best_M`` stay, exploratory.

- ``report.csv``: one row per group: the group keys (``ema.beta`` as ``beta``), ``task``, ``n_seeds``,
  ``n_diverged``; per model ``X`` and column ``C`` in the final metrics ``M``, ``best_M``, ``best_epoch``,
  ``val_loss_std``: ``X_C_mean/_std/_ci_low/_ci_high``; ``X_decay_reached``, ``X_half_life_updates``; per compared
  model ``A`` (every model but the baseline) and compared column ``C``: ``A_C_diff_mean/_diff_ci_low/_diff_ci_high/
  _p_ttest/_p_sign_flip/_p_wilcoxon/_wins/_win_rate/_verdict`` (the verdict on the primary column only, else
  empty), per final metric ``A_M_improvement_pct`` (mean paired relative change vs the baseline in percent, POSITIVE
  = BETTER in that metric's direction), ``A_wins`` (the seeds won on the task's headline metric at the final epoch,
  on the test set when there is one), and ``X_churn`` (:mod:`emabench.report.churn`, classification runs with
  test-set predictions: the mean share of test samples two seeds' models classify differently; NaN where the seeds
  drew their own test sets).
- ``comparison.csv``: long, one row per group × compared model × selection (final, early_stopped, best, stability) ×
  set × metric: group keys, ``model``, ``baseline``, ``task``, ``selection``, ``set`` (``test`` or ``validation``: where
  every number of the row was measured), ``metric`` (``loss``: the test NLL), ``higher_is_better``, ``n_seeds``,
  ``n_diverged``, ``n`` (pairs used), ``baseline_mean/std/ci_low/ci_high``, ``mean/std/ci_low/ci_high``,
  ``diff_mean/diff_ci_low/diff_ci_high``, ``rel_diff_pct`` (model − baseline over |baseline|: its sign is the
  difference's), the unadjusted ``p_ttest``, ``p_sign_flip``, ``p_wilcoxon``, ``wins``, ``win_rate``,
  ``win_ci_low/win_ci_high``, ``skewness``; then ``role`` (primary or exploratory) and, on primary rows, the
  verdict's columns of :mod:`emabench.report.verdicts` (``identical_to``, ``margin``, ``level``, ``evidence``,
  ``p_tost``, ``smallest_margin``, ``seeds_needed``, ``skewed``, ``verdict``).
- ``per_run.csv``: one row per run × model: group keys, ``task``, ``seed``, ``run_id``, ``status``,
  ``stop_reason``, ``epochs``, ``model``, final ``M``, ``best_epoch``, ``best_M``, ``val_loss_std``, with a test set
  ``test_M`` and ``best_test_M`` (``test_loss``, ``best_test_loss`` for classification), ``decay_reached``,
  ``half_life_updates``, ``half_life_epochs``.
- ``versus.csv`` (``--versus KEY=VALUE`` only): long, one row per group of the other keys × model × value of KEY ×
  selection × metric: the other group keys, ``key``, ``value``, ``baseline_value``, ``model``, ``task``,
  ``selection``, ``metric``, ``higher_is_better``, ``n_seeds``, ``n_unpaired`` (seeds only one side ran),
  ``n_diverged`` (of both sides), then as ``comparison.csv`` from ``n`` on, the baseline value in place of the
  baseline model (``diff_* = value − baseline``; its primary rows a family of their own: :mod:`emabench.report.versus`).
- ``report.md`` (tables, figures linked), ``report.html`` (one self-contained file, figures inline) and the
  figures ``fig_*.png`` (drawn by :mod:`emabench.report.figures`).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emabench.report.blocks import document, studies_document
from emabench.report.elements import Image
from emabench.report.figures import report_figures
from emabench.report.frames import Report, Study
from emabench.report.html import to_html
from emabench.report.markdown import to_markdown
from emabench.report.specs import metric_columns
from emabench.report.verdicts import Family
from emabench.runs.sweep_folder import (
    COMPARISON_CSV,
    PER_RUN_CSV,
    REPORT_CSV,
    REPORT_HTML,
    REPORT_MD,
    VERSUS_CSV,
    write_report_files,
)


def _images(report: Report) -> tuple[dict[str, bytes], dict[str, str]]:
    """The report's figures as PNG bytes and their captions, by file name."""
    images: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    for name, (figure, caption) in report_figures(report).items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        images[name], captions[name] = buffer.getvalue(), caption
    return images, captions


def render_studies(studies: Sequence[Study]) -> dict[str, str | bytes]:
    """:func:`render_files` of the one study, or of several in one set of files: each CSV with a ``study`` column
    first, one Markdown/HTML document with a section per study, each study's figures named ``study<k>_fig_*.png``."""
    if len(studies) == 1:
        return render_files(studies[0].report)
    images: dict[str, bytes] = {}
    sections = []
    for index, study in enumerate(studies, start=1):
        prefix = f"study{index}_"
        study_images, captions = _images(study.report)
        images |= {prefix + name: data for name, data in study_images.items()}
        blocks = document(study.report, captions)
        sections.append(
            (study.label, [replace(b, name=prefix + b.name) if isinstance(b, Image) else b for b in blocks])
        )
    blocks = studies_document(sections)
    tables = {
        REPORT_CSV: [s.report.summary for s in studies],
        COMPARISON_CSV: [s.report.comparison for s in studies],
        PER_RUN_CSV: [per_run_csv_frame(s.report) for s in studies],
    }
    combined = {
        name: to_csv(pd.concat([_with_study(t, s.label) for t, s in zip(frames, studies)], ignore_index=True))
        for name, frames in tables.items()
    }
    return {REPORT_MD: to_markdown(blocks), REPORT_HTML: to_html(blocks, images), **combined, **images}


def _with_study(table: pd.DataFrame, label: str) -> pd.DataFrame:
    return table.assign(study=label)[["study", *table.columns]]


def studies_json(studies: Sequence[Study]) -> str:
    """:func:`to_json` of the one study, or ``{"studies": [{"study": label, …its document…}, …]}``."""
    if len(studies) == 1:
        return to_json(studies[0].report)
    documents = [{"study": s.label} | json.loads(to_json(s.report)) for s in studies]
    return json.dumps({"studies": documents}, indent=2, allow_nan=False) + "\n"


def render_files(report: Report) -> dict[str, str | bytes]:
    """Every report file by name: the CSVs, Markdown and HTML as text, the figures as PNG bytes."""
    images, captions = _images(report)
    blocks = document(report, captions)
    return {
        REPORT_CSV: to_csv(report.summary),
        REPORT_MD: to_markdown(blocks),
        REPORT_HTML: to_html(blocks, images),
        COMPARISON_CSV: to_csv(report.comparison),
        PER_RUN_CSV: to_csv(per_run_csv_frame(report)),
        **({VERSUS_CSV: to_csv(report.versus.table)} if report.versus is not None else {}),
        **images,
    }


def write_files(files: dict[str, str | bytes], folder: Path) -> list[Path]:
    """Write :func:`render_files`'s output into ``folder``, each file atomically; returns the paths written."""
    return write_report_files(folder, files)


def per_run_csv_frame(report: Report) -> pd.DataFrame:
    metrics = [c for task in report.tasks for c in metric_columns(task)]
    columns = [*report.by, "group", "task", "seed", "run_id", "status", "stop_reason", "epochs", "model", *metrics]
    columns += ["decay_reached", "half_life_updates", "half_life_epochs"]
    return report.per_run[[c for c in dict.fromkeys(columns) if c in report.per_run.columns]]


def to_csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, lineterminator="\n")


def to_json(report: Report) -> str:
    """The report's tables as JSON (NaN → null), for scripting."""
    document = {
        "by": report.by,
        "alpha": report.alpha,
        "question": _question_json(report),
        "family": _family_json(report.family),
        "tasks": [task.name for task in report.tasks],
        "burn_in": report.burn_in,
        "sources": report.sources,
        "groups": _records(report.summary),
        "comparison": _records(report.comparison),
        "reference": _records(report.reference),
        "decay": _records(report.decay),
        "skipped": [{"path": p, "status": s} for p, s in report.skipped],
        "duplicates": [{"used": kept, "not_used": dropped} for kept, dropped in report.duplicates],
        "versus": _versus_json(report),
        "churn": _records(report.churn),
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def _versus_json(report: Report) -> dict[str, Any] | None:
    """``--versus``: the key, the baseline value, the other values, the pairing keys, the family, the rows."""
    versus = report.versus
    if versus is None:
        return None
    return {
        "key": versus.key,
        "baseline": _json_value(versus.baseline),
        "values": [_json_value(v) for v in versus.values],
        "paired_by": ["seed", *versus.by],
        "family": _family_json(versus.family),
        "comparison": _records(versus.table),
    }


def _question_json(report: Report) -> dict[str, Any]:
    """The baseline and, per task, the primary column, its selection, evaluation set and margin."""
    primary = {
        task.name: {
            "column": p.column,
            "selection": p.selection,
            "metric": p.metric,
            "evaluated_on": p.source,
            "margin": p.margin.value,
            "margin_relative": p.margin.relative,
        }
        for task in report.tasks
        for p in [report.question.of(task)]
    }
    looks = report.looks
    design = {"max_seeds": looks.max_seeds, "looks": list(looks.seeds)} if looks is not None else None
    return {
        "baseline": report.question.baseline,
        "primary": primary,
        "hypothesis": "mean paired difference = 0",
        "sequential": design,
    }


def _family_json(family: Family) -> dict[str, Any]:
    return {
        "tests": family.tests,
        "level": _json_value(family.level),
        "identical_merged": family.merged,
        "description": family.description,
        "error_rate": "family-wise, over every better/worse/equivalent claim, at most alpha",
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _json_value(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
