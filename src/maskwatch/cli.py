"""`maskwatch` command line: argument parsing and console output only."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from maskwatch.batch import add_batch_parser, cmd_batch
from maskwatch.fleet import add_fleet_parser, cmd_fleet
from maskwatch.types import DEFAULT_THRESHOLD, LABELS, FrameResult

log = logging.getLogger("maskwatch")

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maskwatch", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("detect", help="find faces in photos and label their masks")
    d.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    d.add_argument("--out-dir", type=Path, help="write an annotated copy of each image here")
    d.add_argument("--json", type=Path, help="write one JSON object per image (JSON Lines) to this file")
    d.add_argument("--csv", type=Path, help="write one row per face to this CSV file")
    add_model_options(d)

    e = sub.add_parser("evaluate", help="score the pipeline on annotated photos")
    e.add_argument("annotations", type=Path, help="maskwatch JSON file, or a folder of Pascal VOC .xml files")
    e.add_argument("--out-dir", type=Path, default=Path("out/evaluate"),
                   help="where metrics.json, predictions.jsonl and the plots go. Default: out/evaluate")
    add_model_options(e)

    t = sub.add_parser("train", help="train the mask classifier and export it to ONNX (needs the train extra)")
    t.add_argument("--data", type=Path, default=Path("../shared/data"), help="data folder. Default: ../shared/data")
    t.add_argument("--out", type=Path, default=Path("out/train/classifier.onnx"),
                   help="ONNX file to write (its card goes beside it as .json). Default: out/train/classifier.onnx")
    t.add_argument("--cache", type=Path, default=Path("cache"), help="aligned crops are cached here. Default: cache")
    t.add_argument("--epochs", type=int, default=30, help="Default: 30")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="one model per seed, averaged into one ONNX file (~12 min each on 2 cores). Default: 0 1 2")
    t.add_argument("--synth", type=int, default=3000, help="synthetic training crops (0: none). Default: 3000")

    y = sub.add_parser("synth", help="draw synthetic masks on unmasked faces: a contact sheet and the hard cases")
    y.add_argument("--data", type=Path, default=Path("../shared/data"), help="data folder. Default: ../shared/data")
    y.add_argument("--cache", type=Path, default=Path("cache"), help="aligned crops are cached here. Default: cache")
    y.add_argument("--out-dir", type=Path, default=Path("out/synth"), help="Default: out/synth")
    y.add_argument("--count", type=int, default=96, help="crops on the contact sheet. Default: 96")
    y.add_argument("--per-case", type=int, default=40, help="hard cases per kind, drawn on val faces. Default: 40")
    y.add_argument("--seed", type=int, default=0, help="Default: 0")
    y.add_argument("--classifier", type=Path, default=None, help="ONNX classifier to score the hard cases with")
    y.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"p(mask) needed for `mask`. Default: {DEFAULT_THRESHOLD}")

    add_video_parser(sub)
    add_watch_parser(sub)
    add_gate_parser(sub)
    add_events_parser(sub)
    add_deliver_parser(sub)
    add_batch_parser(sub)
    add_fleet_parser(sub)
    from maskwatch.server import add_serve_parser

    add_serve_parser(sub)
    return p


def add_video_parser(sub) -> None:
    v = sub.add_parser("video", help="follow faces through a video, stream or webcam; annotated MP4 and events")
    v.add_argument("input", help=SOURCE_HELP)
    add_output_options(v)
    v.add_argument("--stride", type=int, default=1,
                   help="files: process every n-th frame only (faster, coarser). Default: 1")
    add_show_options(v, default=False)
    add_track_options(v)
    add_alert_options(v)
    add_model_options(v)


SOURCE_HELP = ("video file (mp4, avi, mkv, mov), image folder or glob, webcam index (0), "
               "or http(s)/rtsp URL (MJPEG over HTTP too)")


def add_output_options(v: argparse.ArgumentParser) -> None:
    v.add_argument("--out", type=Path, help="write the annotated video here (H.264 MP4, the input's sound kept)")
    v.add_argument("--events", type=Path, help="write one JSON object per frame (JSON Lines) here")
    v.add_argument("--tracks", type=Path,
                   help="write one JSON object per person track here. Default: beside --events, as *.tracks.jsonl")
    v.add_argument("--summary", type=Path,
                   help="write the run summary (people per label, compliance per minute) here, its plot beside it")
    v.add_argument("--no-audio", action="store_true", help="do not copy the input's sound into --out")


def add_track_options(v: argparse.ArgumentParser) -> None:
    from maskwatch.track import TrackConfig

    tc = TrackConfig()
    v.add_argument("--detect-every", type=int, default=1,
                   help="detect and classify every n-th processed frame; in between, tracked faces move by their "
                        "track's speed (about n times faster; boxes lag on sudden moves). Default: 1")
    v.add_argument("--min-face", type=float, default=tc.min_face,
                   help=f"faces smaller than this (px) are tracked but do not vote. Default: {tc.min_face}")
    v.add_argument("--min-votes", type=int, default=tc.min_votes,
                   help=f"frames of evidence before a track gets a label (else unknown). Default: {tc.min_votes}")
    v.add_argument("--min-confidence", type=float, default=tc.min_confidence,
                   help=f"classifier confidence a frame needs to vote. Default: {tc.min_confidence}")
    v.add_argument("--lost-seconds", type=float, default=tc.lost_seconds,
                   help=f"seconds before an unseen track ends; longer bridges gaps. Default: {tc.lost_seconds}")
    v.add_argument("--bucket", type=float, default=60.0,
                   help="seconds per compliance-over-time bucket in the summary. Default: 60")


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 (any free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535)")
    return port


def add_show_options(v: argparse.ArgumentParser, default: bool) -> None:
    v.add_argument("--show", action=argparse.BooleanOptionalAction, default=default,
                   help="serve the annotated live view on http://127.0.0.1:PORT/ (open it in a browser; a kiosk: "
                        f"chromium --kiosk URL). Default: {'on' if default else 'off'}")
    v.add_argument("--show-port", type=port_number, default=8765, metavar="PORT",
                   help="port of the live view, on loopback only (0: any free port). Default: 8765")


def add_watch_parser(sub) -> None:
    w = sub.add_parser("watch", help="watch a camera or stream: alert on unmasked people, optional live view")
    w.add_argument("input", help=SOURCE_HELP)
    add_show_options(w, default=False)
    w.add_argument("--status-every", type=float, default=10.0, metavar="SECONDS",
                   help="print a status line (faces now, people seen, alerts, fps) this often; 0: never. Default: 10")
    add_output_options(w)
    add_track_options(w)
    add_alert_options(w)
    add_model_options(w)


def add_gate_parser(sub) -> None:
    from maskwatch.gate import GateConfig

    gc = GateConfig()
    g = sub.add_parser("gate", help="entrance kiosk: allow / deny / no face for the person in front of the camera")
    g.add_argument("input", help=SOURCE_HELP)
    add_show_options(g, default=True)
    g.add_argument("--window", type=float, default=gc.window, metavar="SECONDS",
                   help="a verdict is shown once it has held this long (at least --min-frames frames); longer is "
                        f"steadier but slower to change. Default: {gc.window}")
    g.add_argument("--agree", type=float, default=gc.agree, metavar="SHARE",
                   help=f"share of the window's frames a new verdict needs. Default: {gc.agree}")
    g.add_argument("--min-frames", type=int, default=gc.min_frames, help=f"Default: {gc.min_frames}")
    g.add_argument("--gate-min-face", type=float, default=gc.min_face, metavar="PX",
                   help=f"a face smaller than this (shorter side, px) is asked to step closer. Default: {gc.min_face}")
    g.add_argument("--centre", type=float, default=gc.centre, metavar="SHARE",
                   help="only faces centred in this middle share of the frame count (people passing behind do "
                        f"not). Default: {gc.centre}")
    add_model_options(g)


def add_deliver_parser(sub) -> None:
    d = sub.add_parser("deliver", help="send the alerts still waiting in the event store's outbox, then exit")
    d.add_argument("--store", type=Path, default=Path("maskwatch-events.sqlite"),
                   help="SQLite event store. Default: maskwatch-events.sqlite")
    d.add_argument("--for", dest="seconds", type=float, default=60.0, metavar="SECONDS",
                   help="keep retrying failed deliveries this long before giving up for now. Default: 60")
    d.add_argument("--follow", action="store_true",
                   help="keep running and deliver what other processes add, until Ctrl-C or SIGTERM")
    add_sink_options(d)


def add_alert_options(v: argparse.ArgumentParser) -> None:
    from maskwatch.alerts import AlertConfig

    ac = AlertConfig()
    a = v.add_argument_group("alerts", "any of these turns alerts on: each alert is stored in --store first, then "
                                       "delivered to the log and to every sink named (retried until it arrives, "
                                       "also by a later run)")
    a.add_argument("--alert-after", type=float, metavar="SECONDS",
                   help="alert when a person's voted label has been no_mask or incorrect this long; longer "
                        f"ignores masks pulled up after a moment. Default: {ac.after_seconds}")
    a.add_argument("--alert-confidence", type=float, metavar="SHARE",
                   help="share of the person's vote the label needs (0-1); higher: fewer false alerts, "
                        f"doubtful faces never alert. Default: {ac.min_confidence}")
    a.add_argument("--alert-cooldown", type=float, metavar="SECONDS",
                   help="a person alerts again only when still unmasked this much later (a person who leaves and "
                        f"comes back is a new track and alerts anew). Default: {ac.cooldown_seconds:g}")
    add_sink_options(a)
    a.add_argument("--alert-snapshot", action="store_true",
                   help="store and send a JPEG of the face with each alert (base64 in the JSON). Default: off")
    a.add_argument("--store", type=Path, metavar="PATH",
                   help="SQLite event store. Default: maskwatch-events.sqlite beside --events, else in the "
                        "working folder")


def add_sink_options(a) -> None:
    """Where alerts go; the names must match between a run and a later `maskwatch deliver`."""
    a.add_argument("--alert-webhook", action="append", default=[], metavar="URL",
                   help="POST each alert as JSON here (Idempotency-Key header = alert id); repeatable")
    a.add_argument("--alert-mqtt", action="append", default=[], metavar="URL",
                   help="publish each alert as JSON (QoS 1) to mqtt://[user:password@]host[:port]/topic; "
                        "repeatable; needs pip install 'maskwatch[mqtt]'")
    a.add_argument("--alert-file", type=Path, metavar="PATH", help="append each alert as a JSON line to this file")
    a.add_argument("--alert-command", metavar="COMMAND",
                   help="run this command for each alert (split like a shell, run without one), the alert JSON "
                        "on stdin; exit status 0 counts as delivered")


def alerts_wanted(args: argparse.Namespace) -> bool:
    """Alerts are on when any alert option is given: a plain run writes no event store."""
    given = (args.alert_after, args.alert_confidence, args.alert_cooldown, args.alert_file, args.alert_command,
             args.store)
    return any(v is not None for v in given) or bool(args.alert_webhook or args.alert_mqtt) or args.alert_snapshot


def default_store(events: Path | None) -> Path:
    name = "maskwatch-events.sqlite"
    return Path(name) if events is None else events.parent / name


def make_alerting(args: argparse.Namespace):
    from dataclasses import replace

    from maskwatch.alerts import AlertConfig
    from maskwatch.sinks import make_sinks
    from maskwatch.videorun import Alerting

    rules = AlertConfig()
    given = {"after_seconds": args.alert_after, "min_confidence": args.alert_confidence,
             "cooldown_seconds": args.alert_cooldown}
    rules = replace(rules, **{k: v for k, v in given.items() if v is not None})
    sinks = make_sinks(args.alert_webhook, args.alert_file, args.alert_command, args.alert_mqtt)
    return Alerting(store=args.store or default_store(args.events), rules=rules, sinks=tuple(sinks),
                    snapshots=args.alert_snapshot)


def add_events_parser(sub) -> None:
    e = sub.add_parser("events", help="list the alerts in the event store")
    e.add_argument("--since", default="1h",
                   help="how far back: 30s, 15m, 1h, 2d, or an ISO time (2024-05-01T08:00, local unless it "
                        "names a zone). Default: 1h")
    e.add_argument("--label", action="append", choices=LABELS, help="only alerts with this label; repeatable")
    e.add_argument("--store", type=Path, default=Path("maskwatch-events.sqlite"),
                   help="SQLite event store. Default: maskwatch-events.sqlite")
    e.add_argument("--json", action="store_true", help="one JSON object per alert (with its deliveries)")


def add_model_options(p: argparse.ArgumentParser) -> None:
    from maskwatch.detect import DetectorConfig

    dc = DetectorConfig()
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="p(mask) a face needs to count as properly masked; raise it to flag more faces. "
                        f"Default: {DEFAULT_THRESHOLD}")
    p.add_argument("--det-threshold", type=float, default=dc.threshold,
                   help=f"face detector score; lower finds more faces and more false ones. Default: {dc.threshold}")
    p.add_argument("--scale", type=float, default=None,
                   help="detector input scale; default: per image (small photos upscaled, huge ones shrunk)")
    p.add_argument("--min-side", type=int, default=dc.min_side,
                   help=f"photos smaller than this are also run upscaled to it, for tiny faces. Default: {dc.min_side}")
    p.add_argument("--max-side", type=int, default=dc.max_side,
                   help=f"larger photos are shrunk to this long side (memory, time). Default: {dc.max_side}")
    p.add_argument("--thorough", action=argparse.BooleanOptionalAction, default=dc.thorough,
                   help="small photos (long side < 600 px) get 3 scales, each mirrored: more tiny faces, about 6x "
                        "the time; --no-thorough for small video frames. Default: on")
    p.add_argument("--classifier", type=Path, default=None, help="ONNX classifier to use instead of the shipped one")


def make_pipeline(args: argparse.Namespace):
    from dataclasses import replace

    from maskwatch.detect import DetectorConfig
    from maskwatch.pipeline import Pipeline, PipelineConfig

    det = replace(DetectorConfig(), threshold=args.det_threshold, scale=args.scale,
                  min_side=args.min_side, max_side=args.max_side, thorough=args.thorough)
    return Pipeline(PipelineConfig(detector=det, threshold=args.threshold, classifier=args.classifier))


@contextmanager
def progress_bar(total: int, label: str, enabled: bool) -> Iterator:
    """A rich progress bar on stderr; a no-op callable when disabled."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


def summary(result: FrameResult) -> str:
    counts = result.counts()
    n = len(result.faces)
    share = f", {counts['mask'] / n:.0%} properly masked" if n else ""
    parts = ", ".join(f"{counts[k]} {k}" for k in LABELS)
    return f"{n} face{'s' * (n != 1)} ({parts}){share}"


def output_names(inputs: list[str]) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(image path, name relative to --out-dir) pairs, and the non-image files
    ignored in folders: folder inputs keep their inner layout."""
    from maskwatch.decode import list_images

    pairs, ignored = [], []
    for raw in inputs:
        root = Path(raw)
        images, skipped = list_images([root])
        ignored += skipped
        pairs += [(p, p.relative_to(root) if root.is_dir() else Path(p.name)) for p in images]
    return pairs, ignored


def annotated_name(rel: Path) -> Path:
    return rel if rel.suffix.lower() == ".png" else rel.with_suffix(".jpg")


def cmd_detect(args: argparse.Namespace) -> int:
    from maskwatch.decode import DecodeError, decode_file

    pairs, ignored = output_names(args.inputs)
    if ignored:
        names = ", ".join(str(p) for p in ignored[:3]) + (", ..." if len(ignored) > 3 else "")
        print(f"ignored {len(ignored)} file{'s' * (len(ignored) != 1)} without an image suffix: {names}",
              file=sys.stderr)
    pipeline = make_pipeline(args)
    totals = {k: 0 for k in LABELS}
    failed, done, t0 = 0, 0, time.perf_counter()
    json_fh = open_out(args.json)
    csv_writer, csv_fh = None, open_out(args.csv)
    if csv_fh:
        csv_writer = csv.writer(csv_fh)
        csv_writer.writerow(["image", "face", "x1", "y1", "x2", "y2", "score", "label", "confidence",
                             *(f"p_{k}" for k in LABELS)])
    try:
        with progress_bar(len(pairs), "detect", len(pairs) > 1 and sys.stderr.isatty()) as advance:
            for path, rel in pairs:
                t = time.perf_counter()
                try:
                    decoded = decode_file(path)
                    result = pipeline.analyze_decoded(decoded, str(path))
                except (DecodeError, OSError) as exc:
                    failed += 1
                    print(f"{path}: skipped: {exc}", file=sys.stderr)
                    write_line(json_fh, FrameResult.failed(str(path), str(exc)).to_dict())
                    advance()
                    continue
                if args.out_dir:
                    save_image(pipeline.annotated(decoded, result), args.out_dir / annotated_name(rel))
                write_line(json_fh, result.to_dict())
                if csv_writer:
                    write_csv_rows(csv_writer, result)
                for k, v in result.counts().items():
                    totals[k] += v
                done += 1
                print(f"{path}: {summary(result)} [{(time.perf_counter() - t) * 1000:.0f} ms]")
                advance()
    finally:
        for fh in (json_fh, csv_fh):
            if fh:
                fh.close()
    n = sum(totals.values())
    share = f", {totals['mask'] / n:.0%} properly masked" if n else ""
    print(f"run: {done} image{'s' * (done != 1)} ({failed} failed), {n} faces: "
          + ", ".join(f"{totals[k]} {k}" for k in LABELS) + share
          + f" [{time.perf_counter() - t0:.1f} s]")
    for target, what in ((args.out_dir, "annotated images"), (args.json, "JSON lines"), (args.csv, "CSV")):
        if target:
            print(f"{what}: {target}")
    return EXIT_SOME_FAILED if failed else EXIT_OK


def open_out(path: Path | None):
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8", newline="")


def write_line(fh, obj: dict) -> None:
    if fh:
        fh.write(json.dumps(obj) + "\n")
        fh.flush()


def write_csv_rows(writer, result: FrameResult) -> None:
    for i, f in enumerate(result.faces):
        probs = f.probs or {}
        writer.writerow([result.image, i, *(round(v, 2) for v in f.box), round(f.score, 4), f.label,
                         round(f.confidence or 0.0, 4), *(round(probs.get(k, 0.0), 4) for k in LABELS)])


def save_image(rgb, path: Path) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if path.suffix == ".jpg" else []
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"{path}: could not write image")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from maskwatch import evaluate
    from maskwatch.decode import DecodeError

    annotated = evaluate.load_annotations(args.annotations)
    pipeline = make_pipeline(args)

    def analyze(path: str) -> FrameResult:
        try:
            return pipeline.analyze(path)
        except (DecodeError, OSError) as exc:
            return FrameResult.failed(path, str(exc))

    with progress_bar(len(annotated), "evaluate", sys.stderr.isatty()) as advance:
        metrics = evaluate.run(args.annotations, analyze, args.out_dir, args.threshold, progress=advance,
                               annotated=annotated)
    print(evaluate.format_report(metrics))
    print(f"figures: {args.out_dir / 'metrics.json'}; plots: "
          + ", ".join(str(args.out_dir / p) for p in metrics["plots"]))
    return EXIT_SOME_FAILED if metrics["failed_images"] else EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        print("maskwatch train needs torch: pip install 'maskwatch[train]' (torch==2.13.0, CPU)", file=sys.stderr)
        return EXIT_USAGE
    from maskwatch import train

    if not (args.data / "detection" / "train.json").is_file():
        print(f"{args.data}: no detection/train.json here (see --data)", file=sys.stderr)
        return EXIT_USAGE
    cfg = train.TrainConfig(epochs=args.epochs, synth=args.synth)
    card = train.run(args.data, args.out, args.cache, cfg, tuple(args.seeds))
    figures = {k: round(v, 4) for k, v in card["val_crops_calibrated"].items()}
    print(f"wrote {args.out} (best epochs {card['best_epochs']}, temperature {card['temperature']})")
    print(f"val crops: {figures}")
    return EXIT_OK


def cmd_synth(args: argparse.Namespace) -> int:
    import numpy as np

    from maskwatch import evaluate, synth, train
    from maskwatch.classify import MaskClassifier
    from maskwatch.types import LABELS

    if not (args.data / "detection" / "train.json").is_file():
        print(f"{args.data}: no detection/train.json here (see --data)", file=sys.stderr)
        return EXIT_USAGE
    args.out_dir.mkdir(parents=True, exist_ok=True)
    bare = LABELS.index("no_mask")
    train_faces = train.cached_crops("train_det", args.data, args.cache)
    crops, labels, kinds = synth.synthesize(train_faces.x[train_faces.y == bare], args.count, args.seed)
    sheet = args.out_dir / "contact_sheet.png"
    save_image(synth.contact_sheet(crops, [f"{k} ({lab})" for lab, k in zip(labels, kinds, strict=True)]), sheet)
    print(f"contact sheet of {args.count} synthetic crops drawn on train faces: {sheet}")

    val_faces = train.cached_crops("val_det", args.data, args.cache)
    crops, labels, kinds = synth.hard_cases(val_faces.x[val_faces.y == bare], args.per_case, 1000 + args.seed)
    save_image(synth.contact_sheet(crops[:: args.per_case // 4 or 1], kinds[:: args.per_case // 4 or 1]),
               args.out_dir / "hard_cases.png")
    np.savez_compressed(args.out_dir / "hard_cases.npz", x=crops, label=labels, case=kinds)
    probs = MaskClassifier(args.classifier)(crops)
    figures = evaluate.hard_case_figures(probs, labels, kinds, args.threshold)
    (args.out_dir / "hard_cases.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"SYNTHETIC hard cases drawn on val faces (never trained on), {args.per_case} per case:")
    print(evaluate.format_hard_cases(figures))
    print(f"figures: {args.out_dir / 'hard_cases.json'}; examples: {args.out_dir / 'hard_cases.png'}")
    return EXIT_OK


def parse_since(text: str, now: float) -> float:
    """UNIX time from `30s`, `15m`, `1h`, `2d` (that long before `now`) or an ISO time."""
    import re
    from datetime import datetime

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if m:
        return now - float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(f"--since {text!r}: give 30s, 15m, 1h, 2d or an ISO time such as 2024-05-01T08:00") from None


def cmd_events(args: argparse.Namespace) -> int:
    from datetime import datetime

    from maskwatch.alerts import iso
    from maskwatch.store import Store

    since = parse_since(args.since, time.time())
    if not args.store.is_file():
        print(f"maskwatch events: no event store at {args.store} (see --store)", file=sys.stderr)
        return EXIT_USAGE
    with Store(args.store) as store:
        events = store.query(since=since, labels=args.label)
    for e in events:
        a = e.alert
        if args.json:
            d = {k: v for k, v in a.to_dict().items() if k != "snapshot_jpeg"}
            d["snapshot"] = a.snapshot is not None
            d["deliveries"] = [{"sink": s.sink, "attempts": s.attempts,
                                "delivered_at": None if s.delivered_at is None else iso(s.delivered_at),
                                "error": s.last_error} for s in e.deliveries]
            print(json.dumps(d))
        else:
            when = datetime.fromtimestamp(a.time).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{when}  {a.label:<9}  {a.confidence:4.0%}  person #{a.track_id:<4}  {a.source}  "
                  f"at {a.video_time:.1f} s  delivered {e.delivered}/{len(e.deliveries)}  {a.id}")
    if not args.json:
        since_text = datetime.fromtimestamp(since).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{len(events)} alert{'s' * (len(events) != 1)} since {since_text} in {args.store}")
    return EXIT_OK


def video_config(args: argparse.Namespace):
    from dataclasses import replace

    from maskwatch.encode import EncodeConfig
    from maskwatch.track import TrackConfig
    from maskwatch.video import SourceConfig
    from maskwatch.videorun import VideoConfig

    return VideoConfig(
        detect_every=args.detect_every, bucket_seconds=args.bucket,
        source=SourceConfig(stride=getattr(args, "stride", 1)),
        track=replace(TrackConfig(), min_face=args.min_face, min_votes=args.min_votes,
                      min_confidence=args.min_confidence, lost_seconds=args.lost_seconds),
        encode=EncodeConfig(audio=not args.no_audio))


def video_outputs(args: argparse.Namespace):
    from maskwatch.videorun import VideoOutputs

    tracks = args.tracks
    if tracks is None and args.events is not None:
        tracks = args.events.with_name(args.events.stem + ".tracks.jsonl")
    return VideoOutputs(args.out, args.events, tracks, args.summary)


@contextmanager
def stop_on_signals(on_stop=None) -> Iterator[tuple]:
    """(stop event, signals received): Ctrl-C or SIGTERM sets `stop` (and
    calls `on_stop`) so the run finishes its outputs; a second one aborts."""
    import signal
    import threading

    stop, received = threading.Event(), []

    def on_signal(signum, _frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        received.append(signum)
        stop.set()
        if on_stop is not None:
            on_stop()
        print(f"\n{signal.Signals(signum).name}: finishing the outputs (again to abort)", file=sys.stderr)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop, received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def start_view(args: argparse.Namespace, title: str):
    """The live view when --show is on (its URL printed), else None."""
    if not args.show:
        return None
    from maskwatch.liveview import LiveView

    view = LiveView(port=args.show_port, title=title).start()
    print(f"live view: {view.url} (full screen: click it, or chromium --kiosk {view.url})", flush=True)
    return view


def report_run(args: argparse.Namespace, stats, summary: dict, outputs, alerting, received: list[int],
               out=None) -> int:
    """The run's console report; returns the exit status."""
    from maskwatch.track import UNKNOWN

    out = out or sys.stdout
    people = summary["people_per_label"]
    share = f"; {summary['compliance']:.0%} properly masked" if summary["compliance"] is not None else ""
    print(f"{summary['source']}: {stats.frames} frames ({stats.detected} detected) in {stats.seconds:.1f} s "
          f"({stats.fps:.1f} fps), {summary['people']} people: "
          + ", ".join(f"{people[k]} {k}" for k in (*LABELS, UNKNOWN)) + share, file=out)
    counters = summary["source_stats"]
    notes = [f"{counters[k]} {k}" for k in ("dropped", "corrupt", "reconnects") if counters[k]]
    if notes or counters["errors"]:
        print("source: " + ", ".join(notes + counters["errors"]), file=sys.stderr)
    if outputs is not None:
        for target, what in ((outputs.video, "annotated video"), (outputs.events, "frame JSON lines"),
                             (outputs.tracks, "track JSON lines"), (outputs.summary, "summary"),
                             (outputs.plot, "compliance plot")):
            if target:
                print(f"{what}: {target}", file=out)
    if alerting is not None:
        pending = (f"; {stats.deliveries_pending} deliveries pending: maskwatch deliver --store {alerting.store} "
                   "with the same sinks sends them" if stats.deliveries_pending else "")
        print(f"alerts: {stats.alerts} raised, stored in {alerting.store}{pending}", file=out)
    if received:
        print("interrupted: outputs are complete up to the last processed frame", file=sys.stderr)
        return 128 + received[0]
    return EXIT_SOME_FAILED if counters["corrupt"] or counters["errors"] else EXIT_OK


def cmd_video(args: argparse.Namespace) -> int:
    alerting = make_alerting(args) if alerts_wanted(args) else None
    outputs = video_outputs(args)
    if not any((outputs.video, outputs.events, outputs.tracks, outputs.summary, alerting, args.show)):
        print("maskwatch video: nothing to write: give --out, --events, --summary, --show or an --alert option",
              file=sys.stderr)
        return EXIT_USAGE
    return run_tracked(args, outputs, alerting, watching=False)


def cmd_watch(args: argparse.Namespace) -> int:
    return run_tracked(args, video_outputs(args), make_alerting(args), watching=True)


def run_tracked(args: argparse.Namespace, outputs, alerting, watching: bool) -> int:
    """`video` and `watch`: the tracked run with its outputs, alerts, live
    view and (watch) status line, or (video of a file) a progress bar."""
    import math

    from maskwatch.video import open_source
    from maskwatch.videorun import annotate_frame, run_video

    config = video_config(args)
    source = open_source(args.input, config.source)
    pipeline = make_pipeline(args)
    view = start_view(args, f"maskwatch {args.command}: {source.name}")
    status = WatchStatus(source.name, args.status_every if watching else 0)
    if watching:
        where = f"; alerts stored in {alerting.store}" if alerting is not None else ""
        print(f"watching {source.name}{where}; Ctrl-C to stop", flush=True)

    def on_frame(rgb, result: FrameResult) -> None:
        line = status.update(result)
        if view is not None:
            view.publish(lambda: annotate_frame(rgb, result), {"status": line, **status.state()})

    total = source.stats.frame_count
    total = math.ceil(total / config.source.stride) if total and not source.spec.live and not watching else 0
    try:
        with stop_on_signals(source.request_stop) as (stop, received), \
                progress_bar(total, "video", total > 0 and sys.stderr.isatty()) as advance:
            stats, summary = run_video(source, pipeline, outputs, config, progress=advance, stop=stop,
                                       alerting=alerting, on_frame=on_frame)
    finally:
        if view is not None:
            view.close()
    return report_run(args, stats, summary, outputs, alerting, received)


class WatchStatus:
    """The status line of `maskwatch watch`: faces in view now, people seen
    (distinct track ids), frames per second; printed every `every` seconds."""

    def __init__(self, name: str, every: float) -> None:
        self.name, self.every = name, every
        self.people: set[int] = set()
        self.counts = {k: 0 for k in LABELS}
        self.frames, self.t0 = 0, time.monotonic()
        self.printed = self.t0

    def update(self, result: FrameResult) -> str:
        self.frames += 1
        self.people.update(t for t in result.extra.get("track_ids") or [] if t is not None)
        self.counts = result.counts()
        now = time.monotonic()
        line = self.line(now)
        if self.every > 0 and now - self.printed >= self.every:
            self.printed = now
            print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)
        return line

    def state(self) -> dict:
        return {"faces": self.counts, "people": len(self.people), "frames": self.frames}

    def line(self, now: float) -> str:
        n = sum(self.counts.values())
        fps = self.frames / max(1e-9, now - self.t0)
        return (f"{self.name}: {n} face{'s' * (n != 1)} now ("
                + ", ".join(f"{self.counts[k]} {k}" for k in LABELS)
                + f"), {len(self.people)} people seen, {fps:.1f} fps")


def cmd_gate(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from maskwatch.annotate import annotate, banner
    from maskwatch.gate import NO_FACE, Gate, GateConfig, pick_face
    from maskwatch.video import open_source
    from maskwatch.videorun import VideoConfig, run_video

    verdicts: list[dict] = []
    gate = Gate(GateConfig(centre=args.centre, min_face=args.gate_min_face, window=args.window,
                           agree=args.agree, min_frames=args.min_frames))
    source = open_source(args.input)
    pipeline = make_pipeline(args)
    view = start_view(args, f"maskwatch gate: {source.name}")

    def on_frame(rgb, result: FrameResult) -> None:
        t = float(result.extra.get("time", 0.0))
        changed = gate.update(result, t)
        if changed is not None:
            line = {"source": source.name, "frame": result.extra.get("frame"),
                    "wall_time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **changed.to_dict()}
            print(json.dumps(line), flush=True)
            verdicts.append(line)
        if view is not None:
            shown = gate.current
            verdict, message = (NO_FACE, "checking...") if shown is None else (shown.verdict, shown.message)
            face = pick_face(result.faces, result.width, result.height, gate.config.centre)
            chosen = [face] if face is not None else []  # the face the gate judges now
            view.publish(lambda: banner(annotate(rgb, chosen), verdict.replace("_", " ").upper(), message, verdict),
                         {"status": f"{verdict}: {message}", "verdict": None if shown is None else shown.to_dict()})

    try:
        with stop_on_signals(source.request_stop) as (stop, received):
            stats, summary = run_video(source, pipeline, config=VideoConfig(), stop=stop, on_frame=on_frame)
    finally:
        if view is not None:
            view.close()
    counters = summary["source_stats"]
    print(f"{source.name}: {stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.1f} fps), "
          f"{len(verdicts)} verdict{'s' * (len(verdicts) != 1)} shown", file=sys.stderr)
    if received:
        return 128 + received[0]
    return EXIT_SOME_FAILED if counters["corrupt"] or counters["errors"] else EXIT_OK


def cmd_deliver(args: argparse.Namespace) -> int:
    from maskwatch.sinks import DeliveryConfig, Dispatcher, make_sinks
    from maskwatch.store import Store

    if not args.store.is_file():
        print(f"maskwatch deliver: no event store at {args.store} (see --store)", file=sys.stderr)
        return EXIT_USAGE
    sinks = make_sinks(args.alert_webhook, args.alert_file, args.alert_command, args.alert_mqtt)
    with Store(args.store) as store:
        waiting = store.pending()
    named = {s.name for s in sinks}
    print(f"{args.store}: {sum(waiting.values())} deliveries waiting"
          + "".join(f"; {n} for {sink}{'' if sink in named else ' (not named here: kept)'}"
                    for sink, n in sorted(waiting.items())))
    dispatcher = Dispatcher(args.store, sinks, DeliveryConfig(idle_poll=1.0))
    if args.follow:
        dispatcher.start()
        with stop_on_signals() as (stop, _):
            print("delivering; Ctrl-C to stop", flush=True)
            stop.wait()
        left = dispatcher.close(0)
    else:
        left = dispatcher.close(args.seconds)
    print(f"delivered {dispatcher.delivered}, failed tries {dispatcher.failures}, still waiting {left}")
    return EXIT_SOME_FAILED if left else EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from maskwatch.server import cmd_serve as serve

    return serve(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:  # OpenCV's and FFmpeg's own messages (a camera it cannot open) repeat what maskwatch says
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when OpenCV first opens a stream
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    commands = {"detect": cmd_detect, "evaluate": cmd_evaluate, "train": cmd_train, "synth": cmd_synth,
                "video": cmd_video, "watch": cmd_watch, "gate": cmd_gate, "events": cmd_events,
                "deliver": cmd_deliver, "serve": cmd_serve, "batch": cmd_batch, "fleet": cmd_fleet}
    try:
        return commands[args.command](args)
    except FileNotFoundError as exc:
        print(f"maskwatch {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, RuntimeError) as exc:
        print(f"maskwatch {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
