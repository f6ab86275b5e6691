"""Ingest rate: instances per second a Storage SCP accepts from one sender in one association.

The same sender sends the same instances to every receiver: the node's listener, dcmtk's
``storescp`` and Orthanc. Every side disables Nagle's algorithm (``TCP_NODELAY``), otherwise
the figure measures Nagle's delayed acknowledgements rather than the receiver (STACK.md).
"""

from __future__ import annotations

import abc
import copy
import enum
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid
from pynetdicom import AE, _config
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.t1map import make_t1map_stack
from node.network.dimse import NoDelayAE, is_accepted
from tests.netutil import NodeProcess, free_port, wait_for

logger = logging.getLogger(__name__)

SENDER_AE_TITLE = "BENCHSCU"
LOOPBACK = "127.0.0.1"
#: Matrix of the benchmark instances: 256 x 256 uint16 pixels are 131,072 bytes.
INSTANCE_SHAPE = (256, 256)
#: Bound on starting a receiver (until it answers C-ECHO).
START_TIMEOUT_S = 60.0
#: Bound on a receiver's exit after SIGTERM (Orthanc needs about 3.5 s).
STOP_TIMEOUT_S = 20.0
#: Bound on one association: ACSE, DIMSE and network timeouts of the sender.
ASSOCIATION_TIMEOUT_S = 60.0
#: Bound on dcmtk storescu sending one set.
STORESCU_TIMEOUT_S = 300.0
#: Pause between two measurements, so a receiver's after-work does not overlap the next one.
SETTLE_S = 1.0
ORTHANC_BINARY = "/usr/sbin/Orthanc"
#: Statuses storescu --verbose logs as "Received Store Response (<status>...)" for kept objects.
STORESCU_ACCEPTED = ("Success", "Warning")


class BenchError(RuntimeError):
    """A benchmark step could not be carried out; the message says which and why."""


class Sender(enum.StrEnum):
    """The C-STORE SCU used for every measurement of one run."""

    PYNETDICOM = "pynetdicom"
    STORESCU = "storescu"


SENDER_DESCRIPTIONS: Mapping[Sender, str] = {
    Sender.PYNETDICOM: (
        "pynetdicom NoDelayAE (socket TCP_NODELAY), one association, file bytes sent as stored"
        " (STORE_SEND_CHUNKED_DATASET)"
    ),
    Sender.STORESCU: "dcmtk storescu with environment TCP_NODELAY=1, one association",
}


def nodelay_env() -> dict[str, str]:
    """The current environment with ``TCP_NODELAY=1`` (dcmtk and Orthanc read it)."""
    return dict(os.environ, TCP_NODELAY="1")


@dataclass(frozen=True)
class StoreRun:
    """One timed send of a set of instances in one association.

    Attributes
    ----------
    target
        Name of the receiver.
    instances
        Instances sent.
    failures
        Instances answered with a failure status (or not answered).
    store_s
        From the first C-STORE request to the last response (pynetdicom); the whole
        storescu process, association included (storescu).
    total_s
        From the association request to its release.
    last_ack_at
        Wall-clock time (``time.time()``) at which the last response arrived.
    associations
        Associations open at the same time, each sending its own share of ``instances``
        (times then run from the first start to the last end).
    """

    target: str
    instances: int
    failures: int
    store_s: float
    total_s: float
    last_ack_at: float
    associations: int = 1

    @property
    def rate_per_s(self) -> float:
        """Instances acknowledged per second over ``store_s``."""
        return (self.instances - self.failures) / self.store_s if self.store_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "associations": self.associations,
            "instances": self.instances,
            "failures": self.failures,
            "store_s": round(self.store_s, 4),
            "total_s": round(self.total_s, 4),
            "rate_per_s": round(self.rate_per_s, 1),
        }


def c_echo(port: int, called_aet: str, timeout_s: float = 2.0) -> bool:
    """Whether a peer on loopback answers C-ECHO with Success."""
    ae = AE(ae_title=SENDER_AE_TITLE)
    ae.add_requested_context(Verification)
    ae.acse_timeout = timeout_s
    ae.connection_timeout = timeout_s
    ae.dimse_timeout = timeout_s
    ae.network_timeout = timeout_s
    assoc = ae.associate(LOOPBACK, port, ae_title=called_aet)
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    return "Status" in status and int(status.Status) == 0


def _contexts(paths: Sequence[Path]) -> dict[str, set[str]]:
    """Transfer syntaxes per SOP class, from the files' meta information."""
    contexts: dict[str, set[str]] = {}
    for path in paths:
        meta = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"]).file_meta
        contexts.setdefault(str(meta.MediaStorageSOPClassUID), set()).add(
            str(meta.TransferSyntaxUID)
        )
    return contexts


def _send_pynetdicom(paths: Sequence[Path], port: int, called_aet: str, target: str) -> StoreRun:
    contexts = _contexts(paths)
    ae = NoDelayAE(ae_title=SENDER_AE_TITLE)
    ae.acse_timeout = ASSOCIATION_TIMEOUT_S
    ae.dimse_timeout = ASSOCIATION_TIMEOUT_S
    ae.network_timeout = ASSOCIATION_TIMEOUT_S
    ae.connection_timeout = ASSOCIATION_TIMEOUT_S
    for sop_class, syntaxes in sorted(contexts.items()):
        ae.add_requested_context(sop_class, sorted(syntaxes))
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        t0 = time.perf_counter()
        assoc = ae.associate(LOOPBACK, port, ae_title=called_aet)
        if not assoc.is_established:
            raise BenchError(f"{target}: association on port {port} was not accepted")
        failures = 0
        try:
            t1 = time.perf_counter()
            for path in paths:
                status = assoc.send_c_store(path)
                if "Status" not in status or not is_accepted(int(status.Status)):
                    failures += 1
            t2 = time.perf_counter()
            last_ack_at = time.time()
        finally:
            assoc.release()
        t3 = time.perf_counter()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
    return StoreRun(target, len(paths), failures, t2 - t1, t3 - t0, last_ack_at)


def _send_storescu(paths: Sequence[Path], port: int, called_aet: str, target: str) -> StoreRun:
    command = [
        "storescu", "--verbose", "-aet", SENDER_AE_TITLE, "-aec", called_aet,
        "-to", str(int(ASSOCIATION_TIMEOUT_S)), "-ta", str(int(ASSOCIATION_TIMEOUT_S)),
        "-td", str(int(ASSOCIATION_TIMEOUT_S)),
        LOOPBACK, str(port), *map(str, paths),
    ]  # fmt: skip
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=STORESCU_TIMEOUT_S, env=nodelay_env()
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{target}: storescu did not finish in {STORESCU_TIMEOUT_S} s") from exc
    elapsed = time.perf_counter() - t0
    last_ack_at = time.time()
    output = proc.stdout + proc.stderr
    accepted = sum(output.count(f"Received Store Response ({word}") for word in STORESCU_ACCEPTED)
    if proc.returncode != 0 and accepted == 0:
        raise BenchError(f"{target}: storescu exited {proc.returncode}: {output[-500:]}")
    return StoreRun(target, len(paths), len(paths) - accepted, elapsed, elapsed, last_ack_at)


def send_timed(
    paths: Sequence[Path],
    port: int,
    called_aet: str,
    *,
    sender: Sender = Sender.PYNETDICOM,
    target: str = "",
) -> StoreRun:
    """Send files to a Storage SCP on loopback in one association and time it.

    Parameters
    ----------
    paths
        DICOM files, sent in this order.
    port, called_aet
        The receiver.
    sender
        Which SCU sends (see :data:`SENDER_DESCRIPTIONS`).
    target
        Name of the receiver, for the result and error messages.

    Raises
    ------
    BenchError
        When the association is refused or storescu fails.
    """
    if not paths:
        raise BenchError("nothing to send")
    if sender is Sender.STORESCU:
        return _send_storescu(paths, port, called_aet, target)
    return _send_pynetdicom(paths, port, called_aet, target)


def send_concurrent(
    sets: Sequence[Sequence[Path]],
    port: int,
    called_aet: str,
    *,
    sender: Sender = Sender.PYNETDICOM,
    target: str = "",
) -> StoreRun:
    """Send each set in its own association, all at the same time, and time the whole.

    The rate is every acknowledged instance over the time from the first send's start to
    the last send's end (each send as timed by :func:`send_timed`).

    Raises
    ------
    BenchError
        When any of the sends fails outright.
    """
    if len(sets) == 1:
        return send_timed(sets[0], port, called_aet, sender=sender, target=target)
    runs: list[StoreRun | BaseException] = [BenchError("not run")] * len(sets)
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * len(sets)
    barrier = threading.Barrier(len(sets))

    def one(index: int) -> None:
        try:
            barrier.wait(timeout=STORESCU_TIMEOUT_S)
            t0 = time.perf_counter()
            runs[index] = send_timed(
                sets[index], port, called_aet, sender=sender, target=target
            )
            spans[index] = (t0, time.perf_counter())
        except BaseException as exc:  # reported below, in the caller's thread
            runs[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(sets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done: list[StoreRun] = []
    for run in runs:
        if isinstance(run, BaseException):
            raise BenchError(f"{target}: one of {len(sets)} associations failed: {run}") from run
        done.append(run)
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return StoreRun(
        target,
        sum(r.instances for r in done),
        sum(r.failures for r in done),
        wall,
        wall,
        max(r.last_ack_at for r in done),
        associations=len(sets),
    )


# ------------------------------------------------------------------------------ receivers


@dataclass
class ScpProcess(abc.ABC):
    """A Storage SCP run as a child process on loopback, ready once it answers C-ECHO."""

    workdir: Path
    ae_title: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    name: str = "scp"

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The command line that starts the receiver."""

    def prepare(self) -> None:
        """Create what the receiver needs before it starts (folders, configuration)."""
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def log_path(self) -> Path:
        """Where the process's stdout and stderr go."""
        return self.workdir / f"{self.name}.log"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> ScpProcess:
        """Start the process with ``TCP_NODELAY=1`` and wait until it answers C-ECHO.

        Raises
        ------
        BenchError
            When the process exits or does not answer within ``timeout_s``.
        """
        self.prepare()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=nodelay_env(),
                cwd=self.workdir,
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}"
                )
            return c_echo(self.port, self.ae_title, timeout_s=1.0)

        try:
            wait_for(ready, timeout_s, interval=0.2)
        except TimeoutError as exc:
            self.stop()
            raise BenchError(f"{self.name} did not answer C-ECHO within {timeout_s} s") from exc
        logger.info("%s ready on port %d (pid %d)", self.name, self.port, self.proc.pid)
        return self

    def stop(self) -> None:
        """SIGTERM, wait at most :data:`STOP_TIMEOUT_S`, then SIGKILL."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %s s: killing it", self.name, STOP_TIMEOUT_S)
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc = None

    def log_tail(self, n: int = 2000) -> str:
        """The end of the process's log."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-n:]


@dataclass
class StorescpProcess(ScpProcess):
    """dcmtk ``storescp`` writing every instance to a folder (single process)."""

    ae_title: str = "STORESCP"
    name: str = "storescp"

    @property
    def out_dir(self) -> Path:
        """Where storescp writes the instances."""
        return self.workdir / "received"

    def prepare(self) -> None:
        super().prepare()
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            "storescp", "-aet", self.ae_title, "-od", str(self.out_dir), "-dhl",
            str(self.port),
        ]  # fmt: skip


@dataclass
class OrthancProcess(ScpProcess):
    """Orthanc with a temporary storage and index, no plugins, HTTP on a free local port."""

    ae_title: str = "ORTHANC"
    name: str = "orthanc"
    http_port: int = field(default_factory=free_port)

    @property
    def config_path(self) -> Path:
        """The generated configuration file."""
        return self.workdir / "orthanc.json"

    def prepare(self) -> None:
        super().prepare()
        config = {
            "Name": "cmr-node-bench",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.port,
            "DicomAet": self.ae_title,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False,
            "Plugins": [],
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    def command(self) -> list[str]:
        return [ORTHANC_BINARY, str(self.config_path)]


@dataclass
class OrthancNodeProcess(ScpProcess):
    """Orthanc with the cmr-node plugin, as ``python -m node.orthanc.launch`` starts it (the
    node's receive path when Orthanc is in front: Orthanc stores and indexes each instance, the
    plugin's change callback sees it), analyses off as for the node's own listener."""

    ae_title: str = "CMRORTHANC"
    name: str = "orthanc-node"
    http_port: int = field(default_factory=free_port)
    node_settings: str = ""
    """The node's TOML settings (e.g. analyses disabled)."""

    @property
    def settings_path(self) -> Path:
        """The node's settings file given to the launcher."""
        return self.workdir / "node.toml"

    def prepare(self) -> None:
        super().prepare()
        self.settings_path.write_text(self.node_settings)

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "node.orthanc.launch", "--data", str(self.workdir / "data"),
            "--config", str(self.settings_path), "--http-port", str(self.http_port),
            "--dicom-port", str(self.port), "--aet", self.ae_title, "--no-dicomweb",
        ]  # fmt: skip


@dataclass
class CheckoutNodeProcess(NodeProcess):
    """The node of another checkout of the project (e.g. the main branch), same venv.

    Run beside this checkout's node in the same round-robin, it gives before/after figures
    under the same load.
    """

    checkout: Path = Path(".")

    def start(self, timeout: float = 60.0) -> CheckoutNodeProcess:
        """Start ``python -m node run`` from the checkout and wait until it answers C-ECHO."""
        if not self.config_path.exists():
            self.write_config()
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(self.checkout))
        with (self.workdir / "node-stdout.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "node", "run", "--config", str(self.config_path)],
                cwd=self.checkout, stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        wait_for(self._echo_ok, timeout, interval=0.2)
        return self


# ------------------------------------------------------------------------------ instances


def make_template(rng: np.random.Generator) -> Dataset:
    """One 256 x 256 MR T1-map instance (uint16 pixels, about 131 KB) from the phantom."""
    _, slices = make_t1map_stack(
        rng, field_strength_t=1.5, levels=("mid",), shape=INSTANCE_SHAPE
    )
    datasets = t1map_series_datasets(slices, vendor="siemens", field_strength_t=1.5, rng=rng)
    return datasets[0]


def write_instance_set(template: Dataset, count: int, out_dir: Path) -> list[Path]:
    """Write ``count`` copies of ``template`` as one new series with new SOP Instance UIDs.

    ImagesInAcquisition is removed, so the node never considers the series complete during
    the measurement (no routing work competes with the ingest).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = copy.deepcopy(template)
    if "ImagesInAcquisition" in ds:
        del ds.ImagesInAcquisition
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesDescription = "cmr-node bench ingest"
    paths = []
    for i in range(count):
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = i + 1
        path = out_dir / f"{i + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------ measurement


RATIO_PAIRS: tuple[tuple[str, str], ...] = (
    ("node", "orthanc"), ("orthanc-node", "orthanc"), ("node", "baseline"),
    ("baseline", "orthanc"),
)
"""Ingest rate ratios reported (target, reference), each computed round by round."""


@dataclass(frozen=True)
class IngestTarget:
    """A receiver of the ingest measurement."""

    name: str
    port: int
    ae_title: str


@dataclass
class IngestResult:
    """Every timed send, per receiver; one association in ``runs``, more in ``concurrent``."""

    sender: Sender
    instances: int
    instance_bytes: int
    runs: dict[str, list[StoreRun]] = field(default_factory=dict)
    concurrent: dict[int, dict[str, list[StoreRun]]] = field(default_factory=dict)
    instances_per_association: int = 0

    def _runs(self, target: str, associations: int) -> list[StoreRun]:
        table = self.runs if associations == 1 else self.concurrent.get(associations, {})
        return table.get(target, [])

    def rates(self, target: str, associations: int = 1) -> list[float]:
        """Instances/s of every complete send (no failure) of a receiver."""
        return [r.rate_per_s for r in self._runs(target, associations) if r.failures == 0]

    def median_rate(self, target: str, associations: int = 1) -> float | None:
        """Median instances/s of a receiver, or None when it was not measured."""
        rates = self.rates(target, associations)
        return statistics.median(rates) if rates else None

    def ratios(self, target: str, reference: str, associations: int = 1) -> list[float]:
        """Rate of ``target`` over that of ``reference``, repeat by repeat (same round)."""
        pairs = zip(
            self._runs(target, associations), self._runs(reference, associations), strict=False
        )
        return [
            a.rate_per_s / b.rate_per_s
            for a, b in pairs
            if a.failures == 0 and b.failures == 0 and b.rate_per_s > 0
        ]

    def _summary(self, associations: int) -> dict[str, Any]:
        table = self.runs if associations == 1 else self.concurrent[associations]
        targets = {}
        for name, runs in table.items():
            rates = self.rates(name, associations)
            targets[name] = {
                "median_rate_per_s": _round(self.median_rate(name, associations), 1),
                "min_rate_per_s": _round(min(rates), 1) if rates else None,
                "max_rate_per_s": _round(max(rates), 1) if rates else None,
                "runs": [r.as_dict() for r in runs],
            }
        ratios = {}
        for a, b in RATIO_PAIRS:
            values = self.ratios(a, b, associations)
            if values:
                ratios[f"{a}/{b}"] = {
                    "median": round(statistics.median(values), 3),
                    "min": round(min(values), 3),
                    "max": round(max(values), 3),
                    "per_repeat": [round(r, 3) for r in values],
                }
        return {"targets": targets, "ratios": ratios}

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        one = self._summary(1)
        return {
            "sender": str(self.sender),
            "sender_description": SENDER_DESCRIPTIONS[self.sender],
            "instances_per_send": self.instances,
            "instance_bytes": self.instance_bytes,
            "targets": one["targets"],
            "ratios": one["ratios"],
            "concurrent": {
                str(k): {"instances_per_association": self.instances_per_association,
                         **self._summary(k)}
                for k in sorted(self.concurrent)
            },
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def measure_ingest(
    targets: Sequence[IngestTarget],
    sets: Sequence[Sequence[Path]],
    *,
    sender: Sender = Sender.PYNETDICOM,
    warmup: Sequence[Path] = (),
    into: IngestResult | None = None,
    concurrent_sets: Mapping[int, Sequence[Sequence[Sequence[Path]]]] | None = None,
) -> IngestResult:
    """Send every set to every target, round-robin (repeat 1 to all, then repeat 2 ...).

    Parameters
    ----------
    targets
        The receivers, all running.
    sets
        One set of instances per repeat; each set is sent once to each target, in one
        association.
    sender
        The SCU used for every send.
    warmup
        Instances sent once to each target before timing (not counted).
    into
        Filled send by send (so an interrupted benchmark keeps the sends done); a new one
        if None. Its sender is used.
    concurrent_sets
        Per number of associations K > 1: per repeat, K sets, sent at the same time in K
        associations (:func:`send_concurrent`), right after that repeat's one-association
        sends.  The order of the targets turns by one each repeat, so no receiver always
        goes first.

    Raises
    ------
    BenchError
        When a send fails outright.
    """
    if not sets:
        raise BenchError("no instance sets to send")
    result = into if into is not None else IngestResult(sender, 0, 0)
    sender = result.sender
    result.instances = len(sets[0])
    result.instance_bytes = sets[0][0].stat().st_size
    concurrent_sets = dict(concurrent_sets or {})
    for target in targets:
        result.runs[target.name] = []
        if warmup:
            send_timed(warmup, target.port, target.ae_title, sender=sender, target=target.name)
    for k, per_repeat in concurrent_sets.items():
        result.concurrent[k] = {target.name: [] for target in targets}
        result.instances_per_association = len(per_repeat[0][0])
    time.sleep(SETTLE_S)
    for repeat, paths in enumerate(sets, start=1):
        turn = (repeat - 1) % len(targets)
        ordered = [*targets[turn:], *targets[:turn]]
        rounds: list[tuple[int, Sequence[Sequence[Path]]]] = [(1, [paths])]
        rounds += [(k, per_repeat[repeat - 1]) for k, per_repeat in sorted(concurrent_sets.items())]
        for k, shares in rounds:
            for target in ordered:
                run = send_concurrent(
                    shares, target.port, target.ae_title, sender=sender, target=target.name
                )
                table = result.runs if k == 1 else result.concurrent[k]
                table[target.name].append(run)
                logger.info(
                    "ingest %s repeat %d, %d association(s): %d instances in %.2f s"
                    " (%.0f/s, %d failures)",
                    target.name, repeat, k, run.instances, run.store_s, run.rate_per_s,
                    run.failures,
                )  # fmt: skip
                time.sleep(SETTLE_S)
    return result
