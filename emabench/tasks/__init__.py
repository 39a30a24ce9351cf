"""The task: what a run learns and how it is scored. :mod:`.base` defines a task (its loss, its metrics and which
direction of each is better), :mod:`.regression` and :mod:`.classification` are the two, :mod:`.registry` finds them
by name; :mod:`.sources` reads samples (scikit-learn's sets, CSV, IDX, a user function) and :mod:`.data` scales and
splits them as seed 001 does."""
