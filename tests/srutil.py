"""Reading back what the node wrote: SR numeric values per source image."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import Dataset


@dataclass(frozen=True)
class SrNumber:
    """One NUM content item with its context."""

    concept: str
    value: float
    unit: str
    derivation: str | None
    finding: str | None
    referenced_sop_uids: tuple[str, ...]


def _code_meaning(item: Dataset, attr: str) -> str | None:
    seq = item.get(attr)
    return str(seq[0].CodeMeaning) if seq else None


def _referenced_images(group: Dataset) -> tuple[str, ...]:
    uids: list[str] = []

    def walk(items: list[Dataset]) -> None:
        for it in items:
            for ref in it.get("ReferencedSOPSequence", []):
                uids.append(str(ref.ReferencedSOPInstanceUID))
            walk(list(it.get("ContentSequence", [])))

    walk(list(group.get("ContentSequence", [])))
    return tuple(dict.fromkeys(uids))


def sr_numbers(sr: Dataset) -> list[SrNumber]:
    """Every NUM item of an SR with its derivation, finding site and referenced images.

    The referenced images are those referenced anywhere in the enclosing container (for
    TID 1410 groups: the image the contour is drawn on).
    """
    found: list[SrNumber] = []

    def walk(container: Dataset, refs: tuple[str, ...], finding: str | None) -> None:
        children = list(container.get("ContentSequence", []))
        local_finding = finding
        for child in children:
            if (
                child.get("ValueType") == "CODE"
                and _code_meaning(child, "ConceptNameCodeSequence") == "Finding"
            ):
                local_finding = _code_meaning(child, "ConceptCodeSequence")
        for child in children:
            vt = child.get("ValueType")
            if vt == "CONTAINER":
                walk(child, _referenced_images(child) or refs, local_finding)
            elif vt == "NUM" and child.get("MeasuredValueSequence"):
                mv = child.MeasuredValueSequence[0]
                derivation = None
                for mod in child.get("ContentSequence", []):
                    if _code_meaning(mod, "ConceptNameCodeSequence") == "Derivation":
                        derivation = _code_meaning(mod, "ConceptCodeSequence")
                found.append(
                    SrNumber(
                        concept=str(_code_meaning(child, "ConceptNameCodeSequence")),
                        value=float(mv.NumericValue),
                        unit=str(mv.MeasurementUnitsCodeSequence[0].CodeValue),
                        derivation=derivation,
                        finding=local_finding,
                        referenced_sop_uids=refs,
                    )
                )

    walk(sr, (), None)
    return found
