"""The ``cmr-node`` command line.

``cmr-node run``                      start the node (listener, workers, sender, status endpoint)
``cmr-node worker --name N``          analysis worker on a shared PostgreSQL catalog
``cmr-node analyse IN --out OUT``     analyse every recognised series under IN, offline
``cmr-node route PATH...``            dry run: which rule matches each series, or why none does
``cmr-node status``                   recent series, jobs, deliveries and events
``cmr-node send PATH... --port N``    send DICOM files to a peer (a scanner's role, for demos)
``cmr-node echo --port N``            C-ECHO a peer
``cmr-node radiomics train|export|lvrr``  rad-score training, cohort export, LVRR probability
``cmr-node classify train``               site infarct model (clinical + LGE image features)
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from node import __version__
from node.cli.groups import add_command_group, with_config
from node.settings import Settings, SettingsError, load_settings

logger = logging.getLogger(__name__)


def _setup_logging(level: str, log_file: Path | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(log_file, maxBytes=10_000_000, backupCount=5)
        )
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("highdicom").setLevel(logging.WARNING)


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(Path(args.config) if args.config else None)
    overrides: dict[str, Any] = {}
    for key in ("data_dir", "ae_title", "listen_port", "stable_age_s", "http_port", "listen_host",
                "worker_count"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = Path(value).resolve() if key == "data_dir" else value
    return settings.with_overrides(**overrides)


# ------------------------------------------------------------------------------------ run


def _start_logging(settings: Settings, log_name: str) -> None:
    """Log to stderr and ``data_dir/logs/<log_name>``, UIDs hashed if configured.

    ``kill -USR2 <pid>`` writes the stack of every thread to stderr (a stuck process can be
    diagnosed without stopping it).
    """
    import faulthandler

    from node.catalog.audit import UidHashingFilter

    faulthandler.register(signal.SIGUSR2, all_threads=True)

    _setup_logging(settings.log_level, settings.data_dir / "logs" / log_name)
    if settings.log_uids == "hashed":
        for handler in logging.getLogger().handlers:
            handler.addFilter(UidHashingFilter())


def _on_stop_signals(stop: Any) -> None:
    def _stop(signum: int, _frame: object) -> None:
        logger.info("signal %d: stopping", signum)
        stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the node until SIGINT/SIGTERM."""
    from node.service import Node

    settings = _settings(args)
    _start_logging(settings, "node.log")
    node = Node(settings)
    node.start()
    _on_stop_signals(node.stop)
    node.wait()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run analysis workers on the shared PostgreSQL catalog until SIGINT/SIGTERM."""
    import threading

    from node.catalog.catalog import Catalog
    from node.jobs.pipeline import writer_settings
    from node.jobs.warmup import start_warm_up
    from node.jobs.worker import WorkerNameInUseError, WorkerPool
    from plugins import PLUGIN_NAMES

    settings = _settings(args)
    if settings.catalog_url is None:
        print("cmr-node worker needs a shared catalog: set [catalog] url = \"postgresql://...\""
              " (an SQLite catalog belongs to the one `cmr-node run` process)", file=sys.stderr)
        return 2
    if any(c in args.name for c in "/#") or not args.name:
        print(f"--name must be a plain word without '/' or '#', not {args.name!r}",
              file=sys.stderr)
        return 2
    if args.worker_name:
        settings = settings.with_overrides(worker_name=args.worker_name)
    _start_logging(settings, f"worker-{args.name}.log")
    catalog = Catalog(settings.catalog_location)
    pool = WorkerPool(settings, catalog, on_outputs=lambda: None, role=args.name,
                      threads=args.threads)
    warmed_up = threading.Event()
    try:
        pool.start(ready=warmed_up)  # claims jobs once warmed up (see WorkerPool.start)
    except WorkerNameInUseError as exc:
        logger.error("%s", exc)
        catalog.close()
        return 3
    available = sorted(frozenset(PLUGIN_NAMES) & settings.enabled_analyses())
    if (settings.worker_count if args.threads is None else args.threads) > 0:
        start_warm_up(available, writer_settings(settings.manufacturer, settings.institution_name),
                      loaded=warmed_up, mode=settings.warm_up)
    else:
        warmed_up.set()
    stopped = threading.Event()
    _on_stop_signals(stopped.set)
    stopped.wait()
    pool.stop()
    catalog.close()
    logger.info("worker %s stopped after %d jobs", pool.name, pool.jobs_done)
    return 0


# ------------------------------------------------------------------------------------ analyse


def preferred_lge_partners(
    lge_series: Mapping[str, Sequence[Any]], options: Mapping[str, Any]
) -> dict[str, str]:
    """LGE series not to analyse because the preferred reconstruction of the same acquisition
    is present, with the reason (see :mod:`node.completion.pairing`)."""
    from node.completion.pairing import lge_reconstruction, preferred_partner, skip_reason
    from plugins.lge import LgeContrast

    prefer = LgeContrast(str(options.get("prefer", LgeContrast.PSIR)).lower())
    found = [lge_reconstruction(uid, headers) for uid, headers in lge_series.items()]
    known = [r for r in found if r is not None]
    skipped: dict[str, str] = {}
    for candidate in known:
        partner = preferred_partner(candidate, known, prefer)
        if partner is not None:
            skipped[candidate.series_uid] = skip_reason(partner, prefer)
    return skipped


def group_series(paths: Sequence[Path]) -> tuple[dict[str, list[Path]], list[str]]:
    """Group DICOM files by SeriesInstanceUID; returns the groups and notes on skipped files."""
    from pydicom import dcmread

    groups: dict[str, list[Path]] = defaultdict(list)
    notes = []
    for path in paths:
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
            uid = str(ds.SeriesInstanceUID)
        except Exception as exc:
            notes.append(f"{path}: not a readable DICOM file ({type(exc).__name__})")
            continue
        groups[uid].append(path)
    return dict(groups), notes


def _files_under(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def cmd_analyse(args: argparse.Namespace) -> int:
    """Analyse every recognised series under INPUT, write outputs and results.json to OUT."""
    from node.analyses import StudyFacts, assemble_options, descriptor
    from node.inputs.covariates import CovariateFolder, CovariatesError, read_covariates_table
    from node.jobs.pipeline import (
        RESULTS_SCHEMA,
        result_summary,
        run_analysis,
        write_json,
        write_outputs,
        writer_settings,
    )
    from node.outputs.radiomics_export import write_series_features
    from node.routing import load_rules, route
    from node.service import read_headers, route_reason
    from plugins import PLUGIN_NAMES
    from plugins.api import AnalysisError

    settings = _settings(args)
    _setup_logging("WARNING" if not args.verbose else "INFO")
    root = Path(args.input)
    if not root.exists():
        print(f"error: {root} does not exist", file=sys.stderr)
        return 2
    table = None
    if args.covariates:
        try:
            table = read_covariates_table(Path(args.covariates))
        except CovariatesError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    lge_by_study: dict[str, Any] = {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rules = load_rules(settings.rules_file)
    available = frozenset(PLUGIN_NAMES) & settings.enabled_analyses()
    writer = writer_settings(settings.manufacturer, settings.institution_name,
                             probability_seg=settings.probability_seg,
                             uncertainty_map=settings.uncertainty_map)
    groups, notes = group_series(_files_under(root))
    for note in notes:
        print(f"skipped file {note}")
    entries: list[dict[str, Any]] = []
    all_headers = {uid: read_headers(paths) for uid, paths in groups.items()}
    decisions = {
        uid: route(rules, rules.facts(headers), available) for uid, headers in all_headers.items()
    }
    preferred = preferred_lge_partners(
        {uid: all_headers[uid] for uid, d in decisions.items() if d.analysis == "lge"},
        settings.analysis_options.get("lge", {}),
    )
    # Analyses whose results others of the study read (LGE: its scar extent is a covariate
    # of the T1 maps' LVRR models) first, as the node re-queues the readers after them.
    order = sorted(groups, key=lambda uid: (
        not descriptor(decisions[uid].analysis or "").analysed_first, uid))
    sources = ((table,) if table is not None else ()) + (
        CovariateFolder(settings.covariates_folder),)
    for series_uid in order:
        paths = groups[series_uid]
        headers = all_headers[series_uid]
        first = headers[0] if headers else None
        label = (
            f"series {first.get('SeriesNumber', '?')} "
            f"'{first.get('SeriesDescription', '')}' ({len(paths)} files)"
            if first is not None
            else f"series {series_uid}"
        )
        entry: dict[str, Any] = {
            "series_instance_uid": series_uid,
            "series_description": str(first.get("SeriesDescription", "")) if first else "",
            "series_number": str(first.get("SeriesNumber", "")) if first else "",
            "files": len(paths),
        }
        decision = decisions[series_uid]
        reason = route_reason(decision)
        entry["route"] = reason
        analysis = args.analysis or decision.analysis
        if not args.analysis and series_uid in preferred:
            reason = preferred[series_uid]
            analysis = None
        if analysis is None:
            entry.update(status="skipped", reason=reason)
            print(f"skipped {label}: {reason}")
            entries.append(entry)
            continue
        started = time.perf_counter()
        study_uid = str(first.get("StudyInstanceUID", "")) if first is not None else ""
        accession = str(first.get("AccessionNumber", "") or "") if first is not None else ""
        facts = StudyFacts(
            study_uid=study_uid,
            accession=accession or None,
            sources=sources,
            lge_covariates=partial(lge_by_study.get, study_uid),
            candidates=partial(_study_candidates, study_uid, groups, all_headers, decisions),
        )
        try:
            options = assemble_options(
                analysis, settings.analysis_options.get(analysis, {}), paths, facts
            )
            run = run_analysis(paths, analysis, options, writer)
            files = write_outputs(run, out / series_uid)
            summary = result_summary(run, files)
            _remember_lge(lge_by_study, study_uid, summary, label)
            features = write_series_features(
                summary, out / series_uid, run.result.extra.get("radiomics")
            )
            summary["outputs"] = {
                k: {**v, "file": f"{series_uid}/{v['file']}"} for k, v in summary["outputs"].items()
            }
            entry.update(summary)
            if features:
                entry["features_files"] = [f"{series_uid}/{f.name}" for f in features]
            values = ", ".join(
                f"{k}={v['value']}" for k, v in summary["global"].items() if v["value"] is not None
            )
            flags = [f["code"] for f in summary["qc_flags"]]
            print(
                f"analysed {label} as {analysis} in {time.perf_counter() - started:.1f} s: "
                f"{values}{'; QC: ' + ', '.join(flags) if flags else ''}"
            )
        except AnalysisError as exc:
            entry.update(status="failed", analysis=analysis, reason=str(exc))
            print(f"failed {label} ({analysis}): {exc}")
        except Exception as exc:
            logger.exception("unexpected error analysing %s", series_uid)
            entry.update(status="failed", analysis=analysis, reason=f"{type(exc).__name__}: {exc}")
            print(f"failed {label} ({analysis}): unexpected {type(exc).__name__}: {exc}")
        entries.append(entry)
    write_json(
        out / "results.json",
        {
            "schema": RESULTS_SCHEMA,
            "node_version": __version__,
            "input": str(root.resolve()),
            "series": entries,
        },
    )
    analysed = sum(1 for e in entries if e.get("status") == "analysed")
    print(f"{analysed} of {len(entries)} series analysed; results in {out / 'results.json'}")
    return 0


def _study_candidates(
    study_uid: str,
    groups: Mapping[str, Sequence[Path]],
    headers: Mapping[str, Sequence[Any]],
    decisions: Mapping[str, Any],
    specs: Sequence[Any] = (),
) -> list[Any]:
    """The input's series of one study as companion candidates (newest by SeriesDate and
    SeriesTime, then SeriesNumber), whatever roles ``specs`` asks for."""
    from node.inputs.companions import Candidate

    found = []
    for uid, paths in groups.items():
        first = headers[uid][0] if headers.get(uid) else None
        if first is None or str(first.get("StudyInstanceUID", "")) != study_uid:
            continue
        found.append(Candidate(
            uid, decisions[uid].analysis, list(paths), _series_order(first),
            str(first.get("SeriesDescription", "")),
        ))
    return found


def _series_order(header: Any) -> float:
    """A number that grows with SeriesDate and SeriesTime (seconds), then SeriesNumber."""
    from datetime import UTC, datetime

    date = "".join(ch for ch in str(header.get("SeriesDate", "") or "") if ch.isdigit())[:8]
    time_text = str(header.get("SeriesTime", "") or "").split(".")[0]
    clock = "".join(ch for ch in time_text if ch.isdigit())[:6].ljust(6, "0")
    try:
        stamp = datetime.strptime(date + clock, "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        stamp = 0.0
    try:
        number = float(int(header.get("SeriesNumber", 0) or 0))
    except (TypeError, ValueError):
        number = 0.0
    return stamp + min(max(number, 0.0), 9999.0) * 1e-4


def _remember_lge(
    lge_by_study: dict[str, Any], study_uid: str, summary: Mapping[str, Any], label: str
) -> None:
    """Keep an analysed LGE series' covariates for the T1 maps of its study."""
    from node.inputs.covariates import SuppliedCovariates, lge_covariates

    values = lge_covariates(summary)
    if values and study_uid and study_uid not in lge_by_study:
        lge_by_study[study_uid] = SuppliedCovariates(values, f"LGE analysis of {label}")


# ------------------------------------------------------------------------------------ route


def cmd_route(args: argparse.Namespace) -> int:
    """Explain the routing decision for each series under the given paths."""
    from node.routing import format_explanation, load_rules, route
    from node.service import read_headers
    from plugins import PLUGIN_NAMES

    settings = _settings(args)
    rules = load_rules(settings.rules_file)
    available = frozenset(PLUGIN_NAMES) & settings.enabled_analyses()
    files: list[Path] = []
    for p in args.paths:
        files.extend(_files_under(Path(p)))
    groups, notes = group_series(files)
    for note in notes:
        print(f"skipped file {note}")
    for series_uid, paths in sorted(groups.items()):
        headers = read_headers(paths)
        decision = route(rules, rules.facts(headers), available)
        print(f"== series {series_uid} ({len(paths)} files)")
        print(format_explanation(decision))
        print()
    return 0


# ------------------------------------------------------------------------------------ status


def cmd_status(args: argparse.Namespace) -> int:
    """Print recent series, jobs, deliveries and events from the catalog."""
    from node.catalog.catalog import Catalog
    from node.status.report import format_report, status_report

    settings = _settings(args)
    if not settings.catalog_path.exists():
        print(f"no catalog at {settings.catalog_path}: the node has not run with this data_dir")
        return 1
    catalog = Catalog(settings.catalog_location)
    report = status_report(catalog, limit=args.limit)
    catalog.close()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(report))
    return 0


# ------------------------------------------------------------------------------------ send / echo


def cmd_send(args: argparse.Namespace) -> int:
    """Send DICOM files to a peer in one association, as a scanner would."""
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    from node.network.dimse import NoDelayAE, is_accepted

    _setup_logging("WARNING")
    files: list[Path] = []
    for p in args.paths:
        files.extend(_files_under(Path(p)))
    datasets = []
    for path in files:
        try:
            datasets.append(dcmread(path))
        except Exception as exc:
            print(
                f"skipped {path}: not a readable DICOM file ({type(exc).__name__})", file=sys.stderr
            )
    ae = NoDelayAE(ae_title=args.calling_aet)
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ts = sorted(
            {
                str(ds.file_meta.TransferSyntaxUID)
                for ds in datasets
                if str(ds.SOPClassUID) == sop_class
            }
            | {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
        )
        ae.add_requested_context(sop_class, ts)
    assoc = ae.associate(args.host, args.port, ae_title=args.called_aet)
    if not assoc.is_established:
        print(f"association with {args.called_aet}@{args.host}:{args.port} failed", file=sys.stderr)
        return 1
    failures = 0
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(status.Status) if "Status" in status else None
            if code is None or not is_accepted(code):
                failures += 1
                print(f"{ds.SOPInstanceUID}: status {code}", file=sys.stderr)
    finally:
        assoc.release()
    print(f"sent {len(datasets) - failures} of {len(datasets)} instances")
    return 0 if failures == 0 else 1


def cmd_echo(args: argparse.Namespace) -> int:
    """C-ECHO a peer."""
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    from node.network.dimse import NoDelayAE

    ae = NoDelayAE(ae_title=args.calling_aet)
    ae.add_requested_context(Verification)
    assoc = ae.associate(args.host, args.port, ae_title=args.called_aet)
    if not assoc.is_established:
        print("association failed", file=sys.stderr)
        return 1
    status = assoc.send_c_echo()
    assoc.release()
    ok = "Status" in status and int(status.Status) == 0
    print("echo ok" if ok else f"echo failed: {status}")
    return 0 if ok else 1


# ------------------------------------------------------------------------------------ main


def cmd_dicomweb(args: argparse.Namespace) -> int:
    """Pull studies from a DICOMweb archive, analyse them like ``analyse``, optionally STOW back."""
    from node.delivery.dicomweb import (
        DicomWebError,
        make_client,
        output_files,
        parse_filters,
        retrieve_study,
        search_studies,
        stow_files,
    )

    _setup_logging("WARNING" if not args.verbose else "INFO")
    out = Path(args.out)
    inbox = out / "input"
    password = os.environ.get(args.password_env) if args.password_env else None
    client = make_client(args.url, args.username, password)
    try:
        studies = list(args.study) or search_studies(
            client, parse_filters(args.filter) or None, args.limit
        )
        for study_uid in studies:
            files = retrieve_study(client, study_uid, inbox)
            print(f"retrieved study {study_uid}: {len(files)} instance(s)")
    except DicomWebError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not studies:
        print("no study found")
        return 0
    analyse_args = ["analyse", str(inbox), "--out", str(out)]
    for flag, value in (("--config", args.config), ("--data-dir", args.data_dir),
                        ("--covariates", args.covariates)):
        if value:
            analyse_args += [flag, str(value)]
    status = main(analyse_args)
    if status != 0 or not args.stow:
        return status
    results = json.loads((out / "results.json").read_text())
    try:
        stored = stow_files(client, output_files(results, out))
    except DicomWebError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"stored {len(stored)} output object(s) at {args.url} by STOW-RS")
    return 0


def cmd_models_finetune(args: argparse.Namespace) -> int:
    """``cmr-node models finetune`` (:mod:`models.training.lgeseg.finetune`)."""
    from models.training.lgeseg.finetune import run
    from models.training.lgeseg.site_data import SiteDataError

    _setup_logging("INFO")
    try:
        return run(args, "cmr-node models finetune")
    except SiteDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cmr-node``."""
    parser = argparse.ArgumentParser(prog="cmr-node", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"cmr-node {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = with_config(sub.add_parser("run", help="run the node"))
    p.add_argument("--ae-title", dest="ae_title")
    p.add_argument("--port", dest="listen_port", type=int)
    p.add_argument("--host", dest="listen_host")
    p.add_argument("--stable-age", dest="stable_age_s", type=float)
    p.add_argument("--http-port", dest="http_port", type=int)
    p.add_argument("--workers", dest="worker_count", type=int,
                   help="analysis threads (override node.worker_count; 0 with cmr-node worker)")
    p.set_defaults(func=cmd_run)

    p = with_config(sub.add_parser(
        "worker", help="analysis worker process on a shared PostgreSQL catalog ([catalog] url)"
    ))
    p.add_argument("--name", default="worker",
                   help="this worker among the processes of the host (unique; default worker)")
    p.add_argument("--host-name", dest="worker_name",
                   help="override node.worker_name (default: the host name)")
    p.add_argument("--threads", type=int, default=1, help="analysis threads (default 1)")
    p.set_defaults(func=cmd_worker)

    p = with_config(sub.add_parser("analyse", aliases=["analyze"], help="analyse files offline"))
    p.add_argument("input", help="folder (searched recursively) or file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--analysis", help="force this analysis for every series (skip routing)")
    p.add_argument(
        "--covariates",
        metavar="FILE.json",
        help="LVRR covariates and haematocrit (for ECV): a JSON object from "
        "StudyInstanceUID or AccessionNumber to covariates, or one flat object of covariates "
        "for every study",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_analyse)

    p = with_config(sub.add_parser(
        "dicomweb", help="analyse studies of a DICOMweb archive (QIDO-RS, WADO-RS, STOW-RS)"
    ))
    p.add_argument("url", help="DICOMweb service root, e.g. http://pacs/dicom-web")
    p.add_argument("--out", required=True, help="output folder (input/ holds what was pulled)")
    p.add_argument("--study", action="append", default=[], help="StudyInstanceUID (repeatable)")
    p.add_argument("--filter", action="append", default=[],
                   help="QIDO-RS search term Key=Value (repeatable; default ModalitiesInStudy=MR)")
    p.add_argument("--limit", type=int, help="at most this many studies from the search")
    p.add_argument("--stow", action="store_true", help="store the outputs back by STOW-RS")
    p.add_argument("--username", help="HTTP basic user")
    p.add_argument("--password-env", dest="password_env",
                   help="environment variable holding the password")
    p.add_argument("--covariates", help="LVRR covariates file, as for analyse")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_dicomweb)

    p = with_config(sub.add_parser("route", help="explain routing of series (dry run)"))
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_route)

    p = with_config(sub.add_parser("status", help="show series, jobs, deliveries"))
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_status)

    from node.cli.classify import add_classify_commands
    from node.cli.corrections import add_corrections_commands
    from node.cli.radiomics import add_radiomics_commands

    add_radiomics_commands(sub)
    add_classify_commands(sub)
    add_corrections_commands(sub)

    _, models_sub = add_command_group(sub, "models", "network weights of this site")
    p = models_sub.add_parser(
        "finetune", help="fine-tune the two-stage LGE segmenter on the site's labelled slices "
        "(PNG, NIfTI or DICOM SEG); writes weights + provenance for [analysis.lge]"
    )
    from models.training.lgeseg.finetune import add_arguments as add_finetune_arguments

    add_finetune_arguments(p)
    p.set_defaults(func=cmd_models_finetune)

    for name, func in (("send", cmd_send), ("echo", cmd_echo)):
        p = sub.add_parser(name, help=f"C-{name.upper()} to a peer")
        if name == "send":
            p.add_argument("paths", nargs="+")
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=11112)
        p.add_argument("--called-aet", default="CMRNODE")
        p.add_argument("--calling-aet", default="CMRSCU")
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cmr-node``."""
    from node.catalog.store import CatalogError
    from node.routing import RulesError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (SettingsError, RulesError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except CatalogError as exc:
        print(f"catalog unavailable: {exc}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
