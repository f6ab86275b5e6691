"""What the node keeps durably: the catalog database, the spooled files and the audit trail.

Instances, series, jobs, the outbox and events live in the catalog (SQLite, or PostgreSQL for
workers on several machines; :mod:`.catalog` assembles it from :mod:`.store`, :mod:`.series`,
:mod:`.job_queue`, :mod:`.outbox` and :mod:`.queries`); received and written files go through
:mod:`.spool`'s atomic writes; :mod:`.audit` keeps who sent what and where results went, and
withholds identifying values from logs.  Every other room records its state here; it imports
nothing from the rest of the node.
"""
