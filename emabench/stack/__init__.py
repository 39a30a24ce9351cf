"""R runs as one stacked model: the MLP (:mod:`.mlp`) and one replica's rows of its state (:mod:`.rows`)."""
