"""Presentation contexts offered by the listener, cheap to copy for each association.

pynetdicom's acceptor gives each new association its own ``copy.deepcopy`` of the server's
supported presentation contexts (``RequestHandler._create_association``).  The listener
offers every storage SOP class in every transfer syntax pynetdicom knows (174 contexts,
about 7,800 transfer syntax UIDs); deep-copying them re-creates and re-validates every UID
and costs about 0.3 s of CPU per association on a quiet 2-core machine (1 s under load),
paid by the scanner before its first C-STORE.  The transfer syntax UIDs are immutable
strings, so sharing them is as safe as copying them: :class:`CheapCopyContext` copies
each context and its list of syntaxes, nothing deeper.  Negotiation reads and sets the
context's own attributes (result, roles, context ID), which the copy keeps apart.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from pynetdicom.presentation import PresentationContext

__all__ = ["CheapCopyContext", "cheap_copy_contexts"]


class CheapCopyContext(PresentationContext):
    """A :class:`~pynetdicom.presentation.PresentationContext` whose deep copy shares its
    (immutable) UIDs instead of re-creating them."""

    def __deepcopy__(self, memo: dict[int, Any]) -> CheapCopyContext:
        new = copy.copy(self)
        new.__dict__ = {
            key: list(value) if isinstance(value, list) else value
            for key, value in self.__dict__.items()
        }
        memo[id(self)] = new
        return new

    @classmethod
    def of(cls, context: PresentationContext) -> CheapCopyContext:
        """The same context (every attribute) as a :class:`CheapCopyContext`."""
        new = cls.__new__(cls)
        new.__dict__ = copy.deepcopy(context.__dict__)
        return new


def cheap_copy_contexts(contexts: Iterable[PresentationContext]) -> list[PresentationContext]:
    """The contexts as :class:`CheapCopyContext` (for ``AssociationServer.contexts``)."""
    return [CheapCopyContext.of(context) for context in contexts]
