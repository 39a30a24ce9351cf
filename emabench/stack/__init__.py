"""R runs as one stacked model: the stacked layers (:mod:`.layers`), the networks built from them (:mod:`.models`),
the seed network's gradient written out (:mod:`.fast_mlp`) and one replica's rows of a stack's state (:mod:`.rows`)."""
