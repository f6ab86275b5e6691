"""Vendor facts of a whole series: per-image facts and series-level acquisition facts.

:func:`describe_series` reads the instances of a series (classic or enhanced) and gives a
:class:`VendorSeriesFacts`; :func:`describe_headers` does the same from a plain header mapping
(a routing test case or a catalog row, where only public attributes are known).  The facts
feed the router as *derived facts* (:data:`DERIVED_FACTS`, usable in routing rules like DICOM
keywords), the loader as per-frame image kinds and inversion times, and the analyses as
:class:`plugins.api.Acquisition`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydicom.dataset import Dataset

from node.vendor.access import HeaderView, ImageView, MappingView, images_of
from node.vendor.contrast import contrast_phase
from node.vendor.field import nominal_field_strength
from node.vendor.image_kind import ImageKind, image_kind, image_type_tokens
from node.vendor.inversion import inversion_time
from node.vendor.manufacturer import normalise_vendor
from node.vendor.sequence import SeriesShape, inversion_recovery, is_gated, sequence_family
from plugins.api import Acquisition, ContrastPhase

__all__ = [
    "DERIVED_FACTS",
    "ImageFacts",
    "VendorSeriesFacts",
    "describe_headers",
    "describe_series",
    "image_facts",
]

DERIVED_FACTS: Final = {
    "cmr.vendor": "normalised vendor (siemens, philips, ge, canon, united_imaging, unknown)",
    "cmr.sequence_family": "sequence family (molli, shmolli, sasha, look_locker, psir ...)",
    "cmr.field_strength_t": "nominal field strength in tesla",
    "cmr.contrast": "native, post_contrast or unknown",
    "cmr.gated": "yes when ECG / pulse gating or a cardiac sequence or view is evident, else no",
    "cmr.inversion_recovery": "yes when the series is inversion-recovery prepared, else no",
    "cmr.image_kind": "per image: t1_map, t2_map, ecv_map, fit_parameter, magnitude, psir ...",
    "cmr.inversion_time": "per image: the inversion time in ms, standard or vendor private",
}
"""Facts the router may test like DICOM keywords, computed by this package."""


@dataclass(frozen=True)
class ImageFacts:
    """Vendor facts of one image (an instance, or one frame of a multi-frame instance)."""

    kind: ImageKind
    inversion_time_ms: float | None = None
    inversion_time_source: str | None = None


@dataclass(frozen=True)
class VendorSeriesFacts:
    """Vendor facts of one series."""

    vendor: str
    sequence_family: str
    field_strength_t: float | None
    contrast: ContrastPhase
    gated: bool
    inversion_recovery: bool
    images: tuple[ImageFacts, ...] = ()
    evidence: tuple[str, ...] = ()

    @property
    def kinds(self) -> Counter[ImageKind]:
        """How many images of each kind the series holds."""
        return Counter(image.kind for image in self.images)

    @property
    def inversion_times_ms(self) -> tuple[float, ...]:
        """The distinct inversion times of the images, ascending."""
        return tuple(sorted({i.inversion_time_ms for i in self.images
                             if i.inversion_time_ms is not None}))

    def acquisition(self) -> Acquisition:
        """The facts as :class:`plugins.api.Acquisition` (the analyses' view)."""
        return Acquisition(
            vendor=self.vendor,
            sequence_family=self.sequence_family,
            field_strength_t=self.field_strength_t,
            contrast=self.contrast,
            evidence=self.evidence,
        )

    def derived(self) -> tuple[dict[str, Any], dict[str, frozenset[Any]]]:
        """Derived facts for the router: series-level values and per-image distinct values."""
        header: dict[str, Any] = {
            "cmr.vendor": self.vendor,
            "cmr.sequence_family": self.sequence_family,
            "cmr.contrast": self.contrast.value,
            "cmr.gated": "yes" if self.gated else "no",
            "cmr.inversion_recovery": "yes" if self.inversion_recovery else "no",
        }
        if self.field_strength_t is not None:
            header["cmr.field_strength_t"] = self.field_strength_t
        distinct = {
            "cmr.image_kind": frozenset(kind.value for kind in self.kinds),
            "cmr.inversion_time": frozenset(round(t, 3) for t in self.inversion_times_ms),
        }
        return header, distinct


def image_facts(image: HeaderView, vendor: str) -> ImageFacts:
    """Vendor facts of one image."""
    complex_component = image.get("ComplexImageComponent")
    kind = image_kind(image.get("ImageType"), complex_component)
    ti = inversion_time(image, vendor)
    return ImageFacts(kind, ti.ms if ti else None, ti.source if ti else None)


def _describe(
    representative: HeaderView,
    images: Sequence[ImageFacts],
    tokens: Iterable[str],
    trigger_times: Iterable[float],
    max_images_per_slice: int | None,
) -> VendorSeriesFacts:
    vendor = normalise_vendor(representative.get("Manufacturer"))
    evidence = [f"vendor {vendor} (Manufacturer '{representative.get('Manufacturer') or ''}')"]
    field_t, field_why = nominal_field_strength(representative, vendor)
    evidence.append(field_why)
    contrast, contrast_why = contrast_phase(representative)
    evidence.append(f"contrast {contrast.value}: {contrast_why}")
    shape = SeriesShape(
        kinds=frozenset(i.kind for i in images),
        inversion_times_ms=frozenset(i.inversion_time_ms for i in images
                                     if i.inversion_time_ms is not None),
        max_images_per_slice=max_images_per_slice,
        tokens=frozenset(tokens),
        trigger_times_ms=frozenset(trigger_times),
    )
    family, family_why = sequence_family(representative, vendor, shape, contrast)
    evidence.append(f"sequence family {family}: {family_why}")
    gated, gated_why = is_gated(representative, family, shape)
    evidence.append(f"gated {'yes' if gated else 'no'}: {gated_why}")
    ir = inversion_recovery(representative, shape)
    sources = Counter(i.inversion_time_source for i in images if i.inversion_time_source)
    if sources:
        tis = sorted(shape.inversion_times_ms)
        shown = ", ".join(f"{t:g}" for t in tis[:12]) + (" ..." if len(tis) > 12 else "")
        evidence.append(f"inversion times [{shown}] ms from "
                        f"{', '.join(f'{s} ({n})' for s, n in sources.most_common())}")
    kinds = Counter(i.kind.value for i in images)
    evidence.append("image kinds " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())))
    return VendorSeriesFacts(
        vendor=vendor,
        sequence_family=family,
        field_strength_t=field_t,
        contrast=contrast,
        gated=gated,
        inversion_recovery=ir is not None,
        images=tuple(images),
        evidence=tuple(evidence),
    )


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def describe_series(
    datasets: Sequence[Dataset], max_images_per_slice: int | None = None
) -> VendorSeriesFacts:
    """Vendor facts of a series from its instances (headers suffice).

    Parameters
    ----------
    datasets
        The instances of one series; the first one (lowest InstanceNumber is best) is taken
        as representative for series-level attributes.
    max_images_per_slice
        Most images at one slice position, if the caller knows it.
    """
    if not datasets:
        raise ValueError("a series needs at least one instance")
    representative = ImageView(datasets[0], 0 if "PerFrameFunctionalGroupsSequence"
                               in datasets[0] else None)
    vendor = normalise_vendor(representative.get("Manufacturer"))
    images: list[ImageFacts] = []
    tokens: set[str] = set()
    triggers: list[float] = []
    for ds in datasets:
        for view in images_of(ds):
            images.append(image_facts(view, vendor))
            tokens.update(image_type_tokens(view.get("ImageType")))
            trigger = _float(view.get("TriggerTime"))
            if trigger is not None:
                triggers.append(trigger)
    return _describe(representative, images, tokens, triggers, max_images_per_slice)


def describe_headers(
    header: Mapping[str, Any],
    distinct: Mapping[str, Iterable[Any]] | None = None,
    max_images_per_slice: int | None = None,
) -> VendorSeriesFacts:
    """Vendor facts from a header mapping and optional per-image distinct values.

    Per-image facts are approximated from the distinct ImageType and InversionTime values
    (one pseudo-image per distinct value); private tags are not available here.
    """
    distinct = distinct or {}
    view = MappingView(header)
    image_types = list(distinct.get("ImageType") or []) or [header.get("ImageType")]
    tis = [t for t in (_float(v) for v in distinct.get("InversionTime") or
                       [header.get("InversionTime")]) if t is not None and t > 0]
    images = [ImageFacts(image_kind(t, header.get("ComplexImageComponent"))) for t in
              image_types]
    images += [ImageFacts(ImageKind.UNKNOWN, t, "InversionTime (0018,0082)") for t in tis]
    if tis:
        images = [i for i in images if i.inversion_time_ms is not None or
                  i.kind is not ImageKind.UNKNOWN] or images
    tokens: set[str] = set()
    for t in image_types:
        tokens.update(image_type_tokens(t))
    triggers = [t for t in (_float(v) for v in distinct.get("TriggerTime") or
                            [header.get("TriggerTime")]) if t is not None]
    return _describe(view, images, tokens, triggers, max_images_per_slice)

