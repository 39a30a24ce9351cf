"""Training, no disk I/O: the epoch loop (:mod:`.loop`), a config turned into model, optimizer and schedule
(:mod:`.build`), torch's optimizers stepped per replica (:mod:`.stepper`), learning-rate schedules (:mod:`.schedules`),
plateau schedule and early stopping (:mod:`.control`), each epoch's shuffles and dropout masks (:mod:`.batches`), the
averagers built from a config (:mod:`.averagers`), one replica's checkpoint (:mod:`.checkpoint`) and one run over
several processes (:mod:`.data_parallel`)."""
