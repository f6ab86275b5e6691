"""What the node is doing: the status report, its HTTP endpoint and the Prometheus metrics.

:mod:`.report` makes the status report (also printed by ``cmr-node status``) and serves the
small HTTP endpoint; :mod:`.metrics` gives the operations figures in Prometheus format.  Both read
the catalog.  It may import ``catalog``, ``corrections``, ``inputs`` and :mod:`node.settings`;
the composition root, the command line and the Orthanc mode use it.
"""
