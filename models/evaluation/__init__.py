"""Evaluation of the trained networks on held-out phantoms and real images (measuring and
choosing only; nothing here trains and nothing at run time imports it)."""
