"""DICOM networking shared by the receiving and the sending side: DIMSE statuses and TLS.

The lowest room of the node, beside ``vendor``: :mod:`.dimse` (PS3.4 and PS3.7 status values,
application entities that disable Nagle's algorithm) and :mod:`.tls` (PS3.15 B.9 TLS settings
and contexts).  It imports nothing from the node; :mod:`node.settings`, the listener
(``receive``) and the senders (``delivery``) import it.
"""
