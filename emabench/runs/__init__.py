"""Runs on disk: the run folder and its lifecycle (:mod:`.folder`, with :mod:`.atomic` writes and :mod:`.lock`),
the sweep and report folders' file names (:mod:`.sweep_folder`), deferred interrupts (:mod:`.interrupts`), planning
(:mod:`.plan`), training one unit of work (:mod:`.unit`), one run (:mod:`.single`), sweeps (:mod:`.sweep`) and their
executors (:mod:`.pool`; on Ray :mod:`.ray_executor`, the driver, with :mod:`.ray_cluster`, :mod:`.ray_ledger` and
:mod:`.ray_task`), and the run observers that see the folders written (:mod:`.observe`). Nothing is re-exported
here, so reading a run folder never imports the trainer."""
