"""``emabench report``: read finished run folders (never re-train) and say, with honest statistics across seeds,
whether each averaged model beats raw.

Data flow, one module per step, everything after :mod:`.collect` a pure function of data frames::

    run folders ─collect─▶ Collection(runs: one row per run × model, curves: one row per run × model × epoch)
                ─frames.build_report (groups, stats)─▶ Report(per_run, comparison, summary, reference, decay)
                ─figures (PNG), blocks → markdown / html─▶ files.render_files ─files.write_files─▶ the report folder

Nothing is re-exported here, so ``emabench ls`` and ``show`` (which need only :mod:`.collect`) never import the
statistics or the figures.
"""
