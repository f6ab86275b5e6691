"""Jobs: one analysis of one series, run by the worker pool: load, analyse, write, queue outputs.

:mod:`.pipeline` runs load -> analyse -> write for the workers and the offline command;
:mod:`.worker` takes jobs from the catalog and queues their outputs for delivery;
:mod:`.lineage` knows which delivered results a re-analysis replaces; :mod:`.warmup` makes the
first job as fast as the next.  It may import ``analyses``, ``inputs``, ``outputs``, ``catalog``,
:mod:`node.settings` and ``plugins``; the composition root (:mod:`node.service`) starts it.
"""
