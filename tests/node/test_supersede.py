"""Output identity per analysis generation and input content; the SR's predecessor."""

from __future__ import annotations

import pydicom
import pytest

from node.outputs.uids import content_digest, derived_object_identity
from node.outputs.writers import WriterError
from node.outputs.writers.sr import predecessor_documents


def _identity(generation: int = 0, content: str = "abc", description: str = "cmr-node T1 SR"
              ) -> tuple[str, str, str]:
    found = derived_object_identity("1.2.3", "t1map", "0.1.0", "sr", series_number=2001,
                                    series_description=description, content=content,
                                    generation=generation)
    return found.series_instance_uid, found.sop_instance_uid, found.series_description


def test_uids_repeat_within_a_generation_and_change_across_generations_and_inputs() -> None:
    assert _identity(1) == _identity(1), "a restart must rebuild the same objects"
    first, second, other_input = _identity(0), _identity(1), _identity(0, content="abd")
    assert len({first[0], second[0], other_input[0]}) == 3
    assert len({first[1], second[1], other_input[1]}) == 3
    assert first[2] == "cmr-node T1 SR" and second[2] == "cmr-node T1 SR (rev 1)"
    long = _identity(12, description="x" * 80)[2]
    assert len(long) == 64 and long.endswith(" (rev 12)")
    with pytest.raises(ValueError):
        _identity(-1)


def test_content_digest_ignores_order_and_repeats_but_not_membership() -> None:
    assert content_digest(["1.2", "1.3"]) == content_digest(["1.3", "1.2", "1.3"])
    assert content_digest(["1.2", "1.3"]) != content_digest(["1.2"])
    assert len(content_digest([])) == 16


def _header(study: str = "1.2") -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, "1.2.9"
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.9.1"
    return ds


def test_the_predecessor_must_be_an_identified_sr_of_the_same_study() -> None:
    evidence = [_header()]
    assert predecessor_documents(None, evidence) is None
    assert predecessor_documents(_header(), evidence) == [_header()]
    with pytest.raises(WriterError, match="belongs to study"):
        predecessor_documents(_header("1.7"), evidence)
    anonymous = _header()
    del anonymous.SOPInstanceUID
    with pytest.raises(WriterError, match="SOPInstanceUID"):
        predecessor_documents(anonymous, evidence)
