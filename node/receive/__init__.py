"""Receiving: the DICOM listener that stores each instance before it answers the scanner.

The first room of a series' path: the Storage and Verification SCP (:mod:`.listener`), its
C-STORE and C-ECHO handlers (:mod:`.storage`), its receiver processes behind one port
(:mod:`.receivers`), the presentation contexts it offers, the header it reads and checks of
each data set (:mod:`.header`, :mod:`.instance`), the spool recovered at start
(:mod:`.spool_recovery`), its hold on pynetdicom's network layer (:mod:`.dul`) and the
associations that carry each series (their release tells ``completion`` that a scanner has
finished).  It may import ``network``,
``catalog`` and :mod:`node.settings`, nothing else of the node.
"""
