"""Header-only vendor fixtures (tests/fixtures/vendors/*.json) as pydicom data sets.

Each case gives series-level attributes and, per slice position, the images (per-image
overrides).  Private elements are written as ``"(gggg,eeee)": {"vr", "value", "creator"}``;
the creator goes into the block's private-creator element (gggg,00bb).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vendors"
SAX = (0.8, 0.6, 0.0, 0.0, 0.0, -1.0)
NORMAL = (-0.6, 0.8, 0.0)
_PRIVATE = re.compile(r"^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$")


@dataclass(frozen=True)
class VendorCase:
    """One fixture case."""

    vendor: str
    name: str
    kind: str
    expected: str | None
    deciding: str
    family: str
    source: str
    common: Mapping[str, Any]
    series: Mapping[str, Any]
    images: tuple[Mapping[str, Any], ...]
    slices: int

    @property
    def id(self) -> str:
        return f"{self.vendor}-{self.kind}-{self.name}".replace(" ", "_")

    def datasets(self, overrides: Mapping[str, Any] | None = None,
                 remove: tuple[str, ...] = ()) -> list[Dataset]:
        """The instances of the case (header only), with series-level changes applied."""
        seed = int(hashlib.sha256(self.id.encode()).hexdigest()[:12], 16)
        uid = f"2.25.{seed}"
        out: list[Dataset] = []
        number = 0
        for position in range(self.slices):
            for image in self.images:
                number += 1
                values = {**self.common, **self.series, **(overrides or {}), **image}
                for keyword in remove:
                    values.pop(keyword, None)
                out.append(_dataset(values, uid, number, 10.0 * position))
        return out


def _dataset(values: Mapping[str, Any], uid: str, number: int, offset_mm: float) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = f"{uid}.{number}"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = f"{uid}.0.1"
    ds.SeriesInstanceUID = f"{uid}.0.2"
    ds.Modality = "MR"
    ds.InstanceNumber = number
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.ImageOrientationPatient = list(SAX)
    ds.ImagePositionPatient = [round(n * offset_mm, 3) + (10.0 if i == 2 else 0.0)
                               for i, n in enumerate(NORMAL)]
    ds.PixelSpacing = [1.4, 1.4]
    ds.Rows = ds.Columns = 192
    for key, value in values.items():
        match = _PRIVATE.match(key)
        if match:
            group, element = int(match.group(1), 16), int(match.group(2), 16)
            ds.add_new(Tag(group, element >> 8), "LO", value["creator"])
            ds.add_new(Tag(group, element), value["vr"], value["value"])
        else:
            setattr(ds, key, value.split("\\") if isinstance(value, str) and "\\" in value
                    else value)
    return ds


def vendor_cases() -> Iterator[VendorCase]:
    """Every case of every vendor file."""
    for path in sorted(FIXTURES.glob("*.json")):
        doc = json.loads(path.read_text())
        for case in doc["cases"]:
            yield VendorCase(
                vendor=doc["vendor"],
                name=case["name"],
                kind=case["kind"],
                expected=case["expected"],
                deciding=case["deciding"],
                family=case["family"],
                source=case["source"],
                common=doc["common"],
                series=case["series"],
                images=tuple(case["images"]),
                slices=case["slices"],
            )
