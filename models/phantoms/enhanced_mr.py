"""The Philips-style native MOLLI series as one true Enhanced MR Image (multi-frame) instance.

Philips scanners export either classic DICOM (one instance per 2D image) or, when "enhanced"
export is chosen, Enhanced MR Image Storage (1.2.840.10008.5.1.4.1.1.4.1) with **one
multi-frame instance per series** (dcm2niix issue 962: "the enhanced Philips creates one file
per series, whereas classic stores one file per 2D image"; issue 170 compares the two exports
of the same Philips session).  The frames are those of the classic series
(:func:`models.phantoms.philips_style.philips_molli_series_datasets`): per slice position the
inversion-recovery source images followed by the scanner's T1 map.

How the frames are described (PS3.3 A.36.2, Enhanced MR Image IOD; C.8.13 Enhanced MR):

* **MR Image Frame Type** (C.8.13.5.1): source frames ``ORIGINAL\\PRIMARY\\CARDIAC\\NONE``
  with Complex Image Component MAGNITUDE; map frames ``DERIVED\\PRIMARY\\CARDIAC\\T1_MAP``
  (value 3 image flavor and value 4 derived pixel contrast are the standard's defined terms of
  C.8.16.1 / C.8.13.3.1.1, not transcribed from a Philips object; the image level
  ImageType is ``MIXED`` where the frames differ, C.8.13.1.1.1).
* **MR Modifier** (C.8.13.5.6): per frame; source frames carry InversionRecovery YES and their
  inversion time in InversionTimes (0018,9079), the attribute that dcm2niix reads from Philips
  enhanced objects (issues 380 and 385); map frames InversionRecovery NO.
* **Plane Position / Orientation, Pixel Measures** (C.7.6.16.2.1-3): the classic images'
  geometry; orientation and pixel measures shared, position per frame.
* **Pixel Value Transformation** (C.7.6.16.2.9) and **Real World Value Mapping**
  (C.7.6.16.2.11): per frame; source frames rescale 1/0 and an identity mapping without
  units, map frames the Philips display rescale with the real-world value mapping to ms, as
  the classic maps.
* **Frame Content** (C.7.6.16.2.2): dimension index (In-Stack Position, Temporal Position),
  where the map frame of a slice position takes the temporal index after its last source
  image (a choice of this generator: the standard leaves the organisation to the creator).
* **Cardiac Synchronization**: the source frames' trigger delay is their inversion time, as in
  the classic phantom series.
* BodyPartExamined keeps the careless "ABDOMEN" of the Philips-style study, and Frame Anatomy
  codes the same region (SNOMED CT 818981001 "Abdomen"), so that nothing in the object names
  the heart.

Every instance is marked synthetic, as all phantom output.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import EnhancedMRImageStorage

from models.phantoms.dicom_build import _file_meta, write_series
from models.phantoms.dicom_study import StudyInfo, Vendor, _uid
from models.phantoms.philips_style import (
    CARELESS_BODY_PART,
    PHILIPS_INVERSION_DELAY,
    philips_molli_series_datasets,
)
from models.phantoms.t1map import PhantomSlice, make_heart_case, make_t1map_stack

logger = logging.getLogger(__name__)

__all__ = ["enhanced_molli_dataset", "write_enhanced_molli_study"]

ENHANCED_SERIES_NUMBER: Final = 1201
SOURCE_FRAME_TYPE: Final = ("ORIGINAL", "PRIMARY", "CARDIAC", "NONE")
MAP_FRAME_TYPE: Final = ("DERIVED", "PRIMARY", "CARDIAC", "T1_MAP")
ABDOMEN: Final = ("818981001", "SCT", "Abdomen")

# Shared attributes of the image level, copied from the classic instances.
_COPIED: Final = (
    "SpecificCharacterSet", "StudyDate", "SeriesDate", "StudyTime", "SeriesTime",
    "AccessionNumber", "Modality", "Manufacturer", "InstitutionName", "ReferringPhysicianName",
    "StationName", "StudyDescription", "SeriesDescription", "ManufacturerModelName",
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientSize",
    "PatientWeight", "PatientComments", "DeviceSerialNumber", "SoftwareVersions",
    "ProtocolName", "PatientPosition", "StudyInstanceUID", "StudyID", "FrameOfReferenceUID",
    "PositionReferenceIndicator", "ImageComments", "MagneticFieldStrength",
    "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns",
)


def _item(**values: Any) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _seq(*items: Dataset) -> DicomSequence:
    return DicomSequence(list(items))


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def _is_map(ds: Dataset) -> bool:
    return str(ds.ImageType[0]) == "DERIVED"


def _inversion_ms(ds: Dataset) -> float:
    tag = (PHILIPS_INVERSION_DELAY[0] << 16) | PHILIPS_INVERSION_DELAY[1]
    return float(ds[tag].value)


def _shared_group(first: Dataset) -> Dataset:
    """Functional groups common to every frame (geometry, acquisition parameters)."""
    group = Dataset()
    group.PixelMeasuresSequence = _seq(_item(
        PixelSpacing=list(first.PixelSpacing), SliceThickness=first.SliceThickness,
    ))
    group.PlaneOrientationSequence = _seq(_item(
        ImageOrientationPatient=list(first.ImageOrientationPatient),
    ))
    group.MRTimingAndRelatedParametersSequence = _seq(_item(
        RepetitionTime=first.RepetitionTime, FlipAngle=first.FlipAngle,
        EchoTrainLength=1, RFEchoTrainLength=1, GradientEchoTrainLength=1,
        SpecificAbsorptionRateSequence=_seq(_item(
            SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY", SpecificAbsorptionRateValue=0.5,
        )),
        GradientOutputType="DB_DT", GradientOutput=0.0,
        OperatingModeSequence=_seq(*(_item(OperatingModeType=kind, OperatingMode="IEC_NORMAL")
                                     for kind in ("STATIC FIELD", "RF", "GRADIENT"))),
    ))
    group.MRFOVGeometrySequence = _seq(_item(
        InPlanePhaseEncodingDirection="ROW",
        MRAcquisitionFrequencyEncodingSteps=int(first.Columns) // 2,
        MRAcquisitionPhaseEncodingStepsInPlane=int(first.Rows) // 2,
        PercentSampling=100.0, PercentPhaseFieldOfView=float(first.PercentPhaseFieldOfView),
    ))
    group.MREchoSequence = _seq(_item(EffectiveEchoTime=float(first.EchoTime)))
    group.MRImagingModifierSequence = _seq(_item(
        MagnetizationTransfer="NONE", BloodSignalNulling="NO", Tagging="NONE",
        TransmitterFrequency=float(first.ImagingFrequency),
        PixelBandwidth=float(first.PixelBandwidth),
    ))
    group.MRReceiveCoilSequence = _seq(_item(
        ReceiveCoilName=first.ReceiveCoilName, ReceiveCoilManufacturerName="Philips",
        ReceiveCoilType="MULTICOIL", QuadratureReceiveCoil="NO",
        MultiCoilDefinitionSequence=_seq(_item(MultiCoilElementName="E1",
                                               MultiCoilElementUsed="YES")),
        MultiCoilConfiguration="",
    ))
    group.MRTransmitCoilSequence = _seq(_item(
        TransmitCoilName="Body", TransmitCoilManufacturerName="Philips",
        TransmitCoilType="BODY",
    ))
    group.MRAveragesSequence = _seq(_item(NumberOfAverages=1.0))
    group.MRDiffusionSequence = _seq(_item(DiffusionBValue=0.0,
                                           DiffusionDirectionality="NONE"))
    group.FrameAnatomySequence = _seq(_item(
        FrameLaterality="U", AnatomicRegionSequence=_seq(_code(*ABDOMEN)),
    ))
    return group


def _frame_group(ds: Dataset, *, stack_position: int, temporal_index: int,
                 acquisition_datetime: str, rr_interval_ms: float) -> Dataset:
    """Functional groups of one frame, from its classic instance."""
    is_map = _is_map(ds)
    group = Dataset()
    content = _item(
        FrameAcquisitionNumber=1,
        FrameReferenceDateTime=acquisition_datetime,
        FrameAcquisitionDateTime=acquisition_datetime,
        FrameAcquisitionDuration=200.0,
        StackID="1",
        InStackPositionNumber=stack_position,
        TemporalPositionIndex=temporal_index,
        DimensionIndexValues=[stack_position, temporal_index],
    )
    group.FrameContentSequence = _seq(content)
    group.PlanePositionSequence = _seq(_item(
        ImagePositionPatient=list(ds.ImagePositionPatient),
    ))
    group.MRImageFrameTypeSequence = _seq(_item(
        FrameType=list(MAP_FRAME_TYPE if is_map else SOURCE_FRAME_TYPE),
        PixelPresentation="MONOCHROME", VolumetricProperties="VOLUME",
        VolumeBasedCalculationTechnique="NONE", ComplexImageComponent="MAGNITUDE",
        AcquisitionContrast="T1",
    ))
    if is_map:
        modifier = _item(InversionRecovery="NO")
    else:
        modifier = _item(InversionRecovery="YES", InversionTimes=[_inversion_ms(ds)])
    modifier.update(_item(FlowCompensation="NONE", T2Preparation="NO", SpatialPresaturation="NONE",
                          SpectrallySelectedExcitation="NONE", PartialFourier="NO",
                          ParallelAcquisition="NO"))
    group.MRModifierSequence = _seq(modifier)
    group.CardiacSynchronizationSequence = _seq(_item(
        NominalCardiacTriggerDelayTime=float(ds.TriggerTime),
        RRIntervalTimeNominal=rr_interval_ms,
    ))
    group.PixelValueTransformationSequence = _seq(_item(
        RescaleIntercept=ds.get("RescaleIntercept", "0"),
        RescaleSlope=ds.get("RescaleSlope", "1"),
        RescaleType="US",
    ))
    # A functional group is in every per-frame item or in none: the source frames map
    # their stored signal to itself, without units (as the classic source images' encoding).
    group.RealWorldValueMappingSequence = (
        ds.RealWorldValueMappingSequence if "RealWorldValueMappingSequence" in ds
        else _seq(_item(
            RealWorldValueFirstValueMapped=0, RealWorldValueLastValueMapped=65535,
            RealWorldValueIntercept=0.0, RealWorldValueSlope=1.0,
            LUTExplanation="signal", LUTLabel="signal",
            MeasurementUnitsCodeSequence=_seq(_code("1", "UCUM", "no units")),
        ))
    )
    return group


def enhanced_molli_dataset(
    classic: Sequence[Dataset],
    *,
    study: StudyInfo,
    series_number: int = ENHANCED_SERIES_NUMBER,
) -> Dataset:
    """The classic Philips-style MOLLI series as one Enhanced MR Image instance.

    Parameters
    ----------
    classic
        The classic instances (:func:`philips_molli_series_datasets`): per slice position
        the IR source images, then the map, base to apex.
    study
        The study of those instances (for UIDs and dates).
    series_number
        SeriesNumber of the enhanced series (also enters the UIDs).
    """
    if not classic:
        raise ValueError("No classic instances to put into an enhanced object")
    first = classic[0]
    ds = Dataset()
    for keyword in _COPIED:
        if keyword in first:
            setattr(ds, keyword, first[keyword].value)
    ds.SOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = _uid(study.seed, "instance", "enhanced_molli", series_number, 1)
    ds.SeriesInstanceUID = _uid(study.seed, "series", "enhanced_molli", series_number)
    ds.SeriesNumber = str(series_number)
    ds.InstanceNumber = "1"
    ds.BodyPartExamined = str(first.get("BodyPartExamined", CARELESS_BODY_PART))
    ds.ImageType = ["MIXED", "PRIMARY", "CARDIAC", "MIXED"]
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.AcquisitionNumber = "1"
    acquisition_datetime = f"{first.AcquisitionDate}{first.AcquisitionTime}"
    ds.AcquisitionDateTime = acquisition_datetime
    ds.AcquisitionDuration = 12.0
    ds.ContentDate = first.ContentDate
    ds.ContentTime = first.ContentTime
    ds.InstanceCreationDate = first.ContentDate
    ds.InstanceCreationTime = first.ContentTime
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    # Image level MR Image Description (mixed where the frames differ)
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.AcquisitionContrast = "T1"
    # MR Pulse Sequence module (image type value 1 MIXED)
    ds.PulseSequenceName = "MOLLI"
    ds.MRAcquisitionType = "2D"
    ds.EchoPulseSequence = "GRADIENT"
    ds.MultiPlanarExcitation = "NO"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.SteadyStatePulseSequence = "FREE_PRECESSION"
    ds.EchoPlanarPulseSequence = "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "PARTIAL"
    ds.NumberOfKSpaceTrajectories = 1
    # Cardiac Synchronization module
    ds.CardiacSynchronizationTechnique = "PROSPECTIVE"
    ds.CardiacSignalSource = "ECG"
    rr_interval_ms = float(60000.0 / study.heart_rate_bpm)
    ds.CardiacRRIntervalSpecified = rr_interval_ms
    ds.CardiacBeatRejectionTechnique = "NONE"
    ds.LowRRValue = None
    ds.HighRRValue = None
    ds.IntervalsAcquired = None
    ds.IntervalsRejected = None
    ds.CardiacFramingType = "FORW"  # frames timed forward from the R wave (prospective)
    ds.AcquisitionContextSequence = _seq()
    # Multi-frame dimensions: in-stack position, then temporal position
    organization = _uid(study.seed, "dimension-organization", "enhanced_molli", series_number)
    ds.DimensionOrganizationSequence = _seq(_item(DimensionOrganizationUID=organization))
    ds.DimensionIndexSequence = _seq(
        _item(DimensionOrganizationUID=organization, DimensionIndexPointer=0x00209057,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="Slice"),
        _item(DimensionOrganizationUID=organization, DimensionIndexPointer=0x00209128,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="Image"),
    )
    # Frames: per slice position the sources, then the map
    groups: list[Dataset] = []
    pixels: list[np.ndarray] = []
    stack_position = 0
    temporal_index = 0
    for item in classic:
        if temporal_index == 0:
            stack_position += 1
        temporal_index += 1
        groups.append(_frame_group(item, stack_position=stack_position,
                                   temporal_index=temporal_index,
                                   acquisition_datetime=acquisition_datetime,
                                   rr_interval_ms=rr_interval_ms))
        pixels.append(item.pixel_array.astype(np.uint16))
        if _is_map(item):
            temporal_index = 0
    ds.SharedFunctionalGroupsSequence = _seq(_shared_group(first))
    ds.PerFrameFunctionalGroupsSequence = _seq(*groups)
    ds.NumberOfFrames = len(pixels)
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.stack(pixels).astype("<u2").tobytes()
    _file_meta(ds)
    return ds


def write_enhanced_molli_study(
    out_dir: str | Path,
    *,
    seed: int = 0,
    field_strength_t: float = 1.5,
    n_slices: int = 3,
    body_part: str = CARELESS_BODY_PART,
) -> dict[str, Any]:
    """Write the Philips-style native MOLLI series as one Enhanced MR Image file.

    Returns
    -------
    dict
        ``path``: the written file; ``series_instance_uid``; ``expected_analyses``;
        ``classic``: the classic instances the frames were taken from (same pixel data and
        geometry); ``native_slices``, ``study``, ``truth`` as
        :func:`models.phantoms.philips_style.write_philips_style_study`.
    """
    study = StudyInfo.synthetic(seed)
    rng = np.random.default_rng([int(seed), 19])
    levels = ("basal", "mid", "apical")[:n_slices]
    heart = make_heart_case(rng, field_strength_t=field_strength_t, lesion_probability=0.0)
    slices: list[PhantomSlice]
    _, slices = make_t1map_stack(rng, field_strength_t=field_strength_t, levels=levels,
                                 heart=heart)
    classic = philips_molli_series_datasets(slices, study=study, rng=rng, body_part=body_part)
    enhanced = enhanced_molli_dataset(classic, study=study)
    (path,) = write_series([enhanced], Path(out_dir))
    logger.info("wrote an enhanced MR MOLLI series (%d frames) to %s",
                int(enhanced.NumberOfFrames), path)
    return {
        "path": path,
        "series_instance_uid": str(enhanced.SeriesInstanceUID),
        "expected_analyses": ["t1map", "molli"],
        "classic": classic,
        "native_slices": slices,
        "study": study,
        "vendor": Vendor.PHILIPS,
        "truth": {"native_myocardium_t1_ms": [s.truth["myocardium_t1_true_ms"]
                                              for s in slices]},
    }
