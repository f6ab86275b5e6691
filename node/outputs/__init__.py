"""What the node writes from a result: DICOM objects with deterministic UIDs, research exports.

:mod:`.writers` holds one writer per IOD (SEG, TID 1500 SR, summary image, Parametric Maps);
:mod:`.uids` derives every UID they write from the input series and the analysis;
:mod:`.radiomics_export` writes radiomic features per series and per cohort.  It may import
``catalog`` (durable files) and ``plugins``; ``analyses`` and ``jobs`` use it.
"""
