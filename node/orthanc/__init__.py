"""The node as an Orthanc plugin: series that Orthanc declares stable go through the node's queue.

:mod:`.app` wires the node into the ``orthanc`` module that ``orthanc/plugin.py`` passes in;
:mod:`.node` takes stable series into the catalog and runs the workers and the outbox;
:mod:`.rest` serves the ``/cmr-node/`` routes; :mod:`.launch` starts Debian's Orthanc with the
plugin for a data folder.  A top room: it may import every other room and :mod:`node.service`;
nothing of the node imports it.
"""
