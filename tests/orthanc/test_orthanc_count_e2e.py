"""End to end with a real Orthanc (Debian's 1.10 with orthanc-python): a series whose headers
announce their count is analysed ``count_grace_s`` after its last instance, long before Orthanc
declares it stable; a series without a count waits for ``STABLE_SERIES``; and the
``STABLE_SERIES`` of the series completed by its count does not analyse it a second time.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from bench.latency import Completeness, write_t1map_study
from tests.netutil import storescu
from tests.orthanc.orthancutil import ORTHANC_AVAILABLE, OrthancProcess, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not ORTHANC_AVAILABLE, reason="Debian's orthanc and orthanc-python"),
]

logger = logging.getLogger(__name__)

STABLE_AGE_S = 20
#: The series with a count must be taken in well before Orthanc declares it stable
#: (count_grace_s is 2 s by default).
COUNT_DEADLINE_S = 10.0
RESULT_TIMEOUT_S = 120.0


def _send(orthanc: OrthancProcess, paths: list[Path]) -> float:
    """Send a series; returns the time its last instance was stored."""
    proc = storescu(paths, orthanc.dicom_port, called=orthanc.aet)
    assert proc.returncode == 0, proc.stderr
    return time.time()


def _job(orthanc: OrthancProcess, series_uid: str, state: str) -> list[dict[str, object]]:
    rows = orthanc.query(
        "SELECT * FROM jobs WHERE series_instance_uid=? AND state=? ORDER BY id",
        (series_uid, state),
    )
    return [dict(r) for r in rows]


def _intake(orthanc: OrthancProcess, series_uid: str) -> list[dict[str, object]]:
    rows = orthanc.query(
        "SELECT reason, state, created_at FROM orthanc_intake WHERE series_instance_uid=?"
        " ORDER BY id",
        (series_uid,),
    )
    return [dict(r) for r in rows]


def test_series_with_a_count_is_analysed_before_stable_age_and_only_once(
    tmp_path: Path,
) -> None:
    counted = write_t1map_study(61, tmp_path / "counted", Completeness.KNOWN)
    uncounted = write_t1map_study(62, tmp_path / "uncounted", Completeness.UNKNOWN)
    assert [int(dcmread(p, stop_before_pixels=True).ImagesInAcquisition) for p in counted] == [
        3, 3, 3,
    ]
    assert all("ImagesInAcquisition" not in dcmread(p, stop_before_pixels=True)
               for p in uncounted)
    counted_uid = str(dcmread(counted[0], stop_before_pixels=True).SeriesInstanceUID)
    uncounted_uid = str(dcmread(uncounted[0], stop_before_pixels=True).SeriesInstanceUID)
    orthanc = OrthancProcess(tmp_path / "orthanc", None, stable_age_s=STABLE_AGE_S).start()
    try:
        counted_last = _send(orthanc, counted)
        uncounted_last = _send(orthanc, uncounted)

        [started] = wait_until(lambda: _job(orthanc, counted_uid, "running")
                               or _job(orthanc, counted_uid, "done"), COUNT_DEADLINE_S, 0.05)
        to_start = float(str(started["started_at"])) - counted_last
        [intake] = _intake(orthanc, counted_uid)
        assert intake["reason"] == "count"
        to_intake = float(str(intake["created_at"])) - counted_last
        [done] = wait_until(lambda: _job(orthanc, counted_uid, "done"), RESULT_TIMEOUT_S)
        to_done = float(str(done["finished_at"])) - counted_last
        logger.info("with a count: last instance -> handed over %.1f s, job start %.1f s, "
                    "outputs %.1f s (StableAge %d s)", to_intake, to_start, to_done, STABLE_AGE_S)
        assert 1.5 <= to_intake < COUNT_DEADLINE_S  # count_grace_s (2 s) after the last one
        assert to_start < COUNT_DEADLINE_S

        # Without a count, the series waits for Orthanc's STABLE_SERIES.
        assert _intake(orthanc, uncounted_uid) == []
        [other] = wait_until(lambda: _job(orthanc, uncounted_uid, "done"),
                             STABLE_AGE_S + RESULT_TIMEOUT_S)
        [intake] = _intake(orthanc, uncounted_uid)
        assert intake["reason"] == "stable"
        waited = float(str(intake["created_at"])) - uncounted_last
        logger.info("without a count: last instance -> handed over %.1f s, job start %.1f s",
                    waited, float(str(other["started_at"])) - uncounted_last)
        assert waited >= STABLE_AGE_S - 1.0

        # Orthanc declared the counted series stable meanwhile: it is not analysed again.
        time.sleep(max(0.0, counted_last + STABLE_AGE_S + 3.0 - time.time()))
        assert [r["reason"] for r in _intake(orthanc, counted_uid)] == ["count"]
        jobs = orthanc.query("SELECT state FROM jobs WHERE series_instance_uid=?",
                             (counted_uid,))
        assert [r["state"] for r in jobs] == ["done"]
        log = (orthanc.data_dir / "node" / "logs" / "cmr-node.log").read_text()
        assert f"series {counted_uid} complete: count 3 reached" in log
        assert f"series {uncounted_uid} complete" not in log
    except BaseException:
        logger.error("%s", orthanc.log_tail())
        raise
    finally:
        orthanc.stop()
