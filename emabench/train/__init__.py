"""Training, no disk I/O: the loop (:mod:`.loop`), per-replica Adam (:mod:`.optim`), plateau schedule and early
stopping (:mod:`.control`), and the averagers built from a config (:mod:`.averagers`)."""
