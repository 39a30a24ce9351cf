"""Studies: the runs one question was asked of. A runs folder after a day of work holds several — a sweep of betas, a
sweep of averagers, a few single runs — and one report over all of them would pair runs that were never meant to be
compared. So the report splits the runs it finds into studies and reports each on its own (its own groups, its own
family of verdicts, a section of its own):

- the runs of one sweep folder (``sweep.json`` beside them) are one study, named after the folder;
- runs made one by one (``emabench run``) are one study per config ``name``, named ``<name> (single runs)``;
- a single run whose very config a sweep trained again (found twice, counted once) belongs to that sweep's study.

Pure functions of a :class:`~emabench.report.collect.Collection`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emabench.report.collect import Collection
from emabench.report.verdicts import Looks
from emabench.runs.sweep_folder import is_sweep_folder, read_sweep_spec

SINGLE = "single"  # collect's sweep_mode of a run made by ``emabench run``


def study_labels(collection: Collection) -> pd.Series:
    """The study of each row of ``collection.runs`` (module docstring)."""
    runs = collection.runs
    parents = runs["run_path"].map(lambda path: Path(str(path)).parent.name)
    single = runs["sweep_mode"].eq(SINGLE) if "sweep_mode" in runs.columns else pd.Series(True, index=runs.index)
    names = runs["name"].astype(str) if "name" in runs.columns else pd.Series("runs", index=runs.index)
    labels = parents.where(~single, names + " (single runs)")
    swept_again = {
        str(kept.path): dropped.path.parent.name
        for kept, dropped in collection.duplicates
        if not is_sweep_folder(kept.path.parent) and is_sweep_folder(dropped.path.parent)
    }
    moved = runs["run_path"].astype(str).map(swept_again)
    return moved.where(moved.notna(), labels)


def split_studies(collection: Collection) -> list[tuple[str, Collection]]:
    """One :class:`Collection` per study, in order of appearance; the skipped and duplicate folders go with the
    first (they are listed once)."""
    if collection.runs.empty:
        return [("", collection)]
    labels = study_labels(collection)
    studies = []
    for index, label in enumerate(dict.fromkeys(labels)):
        runs = collection.runs[labels == label].reset_index(drop=True)
        curves = collection.curves[collection.curves["run_id"].isin(set(runs["run_id"]))].reset_index(drop=True)
        extra = (collection.skipped, collection.duplicates) if index == 0 else ([], [])
        studies.append((str(label), Collection(runs, curves, *extra)))
    return studies


def looks_of(collection: Collection) -> Looks | None:
    """The looks of a sequential study (``sweep --until-decided``): when its swept runs all lie in one sweep folder
    whose ``sweep.json`` records them (read here, like :func:`~emabench.runs.sweep_folder.sweep_mode` in collect)."""
    runs = collection.runs
    if runs.empty or "run_path" not in runs.columns:
        return None
    swept = runs[runs["sweep_mode"] != SINGLE] if "sweep_mode" in runs.columns else runs
    folders = {Path(str(path)).parent for path in swept["run_path"]}
    if len(folders) != 1:
        return None
    recorded = read_sweep_spec(folders.pop()).get("sequential")
    try:
        return Looks(int(recorded["max_seeds"]), tuple(int(n) for n in recorded["looks"]))
    except (TypeError, KeyError, ValueError):
        return None
