"""The task: the seed study's data set (:mod:`.data`) and its regression metrics (:mod:`.metrics`)."""
