"""One run's results as pure functions of its history frame: the final table (:mod:`.tables`) and figures
(:mod:`.figures`)."""
