"""The ``cmr-node`` command line: run the node or a worker, analyse offline, send, report, train.

:mod:`.main` is the entry point with its sub-commands; :mod:`.classify` and :mod:`.radiomics`
train and export a site's models, :mod:`.corrections` exports the readers' corrections;
:mod:`.groups` holds what these command groups share.  A top room: it may import every
other room and :mod:`node.service`; nothing imports it but ``python -m node``.
"""
