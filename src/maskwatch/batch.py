"""`maskwatch batch`: the photo pipeline over many images on Ray Data.

A thin wrapper: every image goes through the same `Pipeline.analyze_decoded`
that `maskwatch detect` calls, inside Ray actors that each hold one ONNX
session per model, so the results are the same. What this module adds is
only the plumbing that lets a run span machines and survive failures:

- The driver lists the images (folders, globs, text files of paths) and cuts
  the ones not yet done into *parts* of `part_size` images. A part is named
  by a hash of its image paths, so a retried part has the same name.
- An actor analyses a part and writes it as one Parquet file,
  `OUT/faces/part-<hash>.parquet`, first to a hidden temp file and then
  renamed: a killed worker or run never leaves a half part that counts.
  Every image gets at least one row (a face per row; an image without faces
  or one that could not be read gets one row with empty face columns), so
  the parts say exactly which images are done.
- A re-run reads the `path` column of the parts already there and skips those
  images: nothing is analysed or counted twice. Ray restarts an actor that
  dies and retries its part; a part already written by a dead attempt is not
  redone.

The Parquet columns are the part-1 JSON schema (`FrameResult.to_dict`, same
rounding) flattened to one row per face; see `SCHEMA`.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maskwatch.types import LABELS, FrameResult

if TYPE_CHECKING:  # the models load only where they run: `maskwatch --help` stays fast
    from maskwatch.pipeline import PipelineConfig

log = logging.getLogger(__name__)

FACES_DIR = "faces"
ANNOTATED_DIR = "annotated"
SETTINGS_FILE = "batch.json"
MAX_RETRIES = 3
"""Times Ray retries a part whose actor died (then the run stops; a re-run goes on)."""
RAY_HINT = "maskwatch batch needs Ray: pip install 'maskwatch[ray]'"


def schema():
    """The Parquet schema: one row per face, or one row with empty face
    columns for an image without faces or with an `error`."""
    import pyarrow as pa

    f64, i32 = pa.float64(), pa.int32()
    return pa.schema([
        ("image", pa.string()),       # the path as given, as `maskwatch detect` names it
        ("path", pa.string()),        # absolute path: what a re-run matches on
        ("file_bytes", pa.int64()),   # size of the file; null when it could not be read
        ("width", i32), ("height", i32),  # stored pixels; 0 when the image could not be read
        ("orientation", i32),         # EXIF orientation (1: none)
        ("error", pa.string()),       # why the image could not be read; null when it was
        ("faces", i32),               # faces in this image
        ("face", i32),                # index of this face in the image; null on a row without a face
        ("x1", f64), ("y1", f64), ("x2", f64), ("y2", f64),
        ("score", f64),
        ("landmarks", pa.list_(f64)),  # x, y of the 5 landmarks, flattened
        ("label", pa.string()),
        ("confidence", f64),
        *((f"p_{k}", f64) for k in LABELS),
    ])


SCHEMA_NAMES = ("image", "path", "file_bytes", "width", "height", "orientation", "error", "faces", "face",
                "x1", "y1", "x2", "y2", "score", "landmarks", "label", "confidence", *(f"p_{k}" for k in LABELS))


def result_rows(result: dict[str, Any], path: str, file_bytes: int | None) -> list[dict[str, Any]]:
    """Flatten one `FrameResult.to_dict()` into Parquet rows: one per face, or
    a single row with empty face columns so that every image is recorded."""
    base = {"image": result["image"], "path": path, "file_bytes": file_bytes, "width": result["width"],
            "height": result["height"], "orientation": int(result.get("orientation", 1)),
            "error": result.get("error"), "faces": len(result["faces"])}
    empty = {k: None for k in SCHEMA_NAMES if k not in base}
    if not result["faces"]:
        return [{**base, **empty}]
    rows = []
    for i, f in enumerate(result["faces"]):
        probs = f.get("probs") or {}
        x1, y1, x2, y2 = f["box"]
        rows.append({**base, **empty, "face": i, "x1": x1, "y1": y1, "x2": x2, "y2": y2, "score": f["score"],
                     "landmarks": [v for point in f["landmarks"] for v in point], "label": f.get("label"),
                     "confidence": f.get("confidence"), **{f"p_{k}": probs.get(k) for k in LABELS}})
    return rows


def rows_to_results(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The inverse of `result_rows`, keyed by `image`: the part-1 dicts back
    from Parquet rows (for comparing with `maskwatch detect` JSON)."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        d = out.setdefault(r["image"], {"image": r["image"], "width": r["width"], "height": r["height"],
                                        "faces": []})
        if r["error"] is not None:
            d["error"] = r["error"]
        if r["orientation"] not in (None, 1):
            d["orientation"] = r["orientation"]
        if r["face"] is not None:
            lms = r["landmarks"] or []
            d["faces"].append({"face": r["face"], "box": [r["x1"], r["y1"], r["x2"], r["y2"]], "score": r["score"],
                               "landmarks": [list(lms[i:i + 2]) for i in range(0, len(lms), 2)],
                               "label": r["label"], "confidence": r["confidence"],
                               "probs": {k: r[f"p_{k}"] for k in LABELS}})
    for d in out.values():
        d["faces"] = [{k: v for k, v in f.items() if k != "face"} for f in sorted(d["faces"], key=lambda f: f["face"])]
    return out


@dataclass(frozen=True)
class Item:
    """One image to analyse: `image` as `maskwatch detect` names it, `path`
    absolute (workers may run elsewhere), `rel` its annotated copy's name."""

    image: str
    path: str
    rel: str


def list_inputs(inputs: Sequence[str]) -> tuple[list[Item], list[Path]]:
    """(images, ignored files) from folders (recursive, as `detect`), globs
    (`photos/**/*.jpg`), text files of paths (one a line, `#` comments;
    relative lines are relative to the working folder, as typed in a shell)
    and single images. A path listed twice is taken once."""
    from maskwatch.decode import IMAGE_SUFFIXES, list_images

    items: list[Item] = []
    ignored: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            images, skipped = list_images([p])
            ignored += skipped
            items += [_item(f, f.relative_to(p)) for f in images]
        elif p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES and _is_text(p):
            items += [_item(Path(line), _rel(Path(line))) for line in _lines(p)]
        elif p.is_file():
            items.append(_item(p, Path(p.name)))
        elif glob.has_magic(raw):
            matches = [Path(m) for m in sorted(glob.glob(raw, recursive=True))]
            files = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES]
            if not files:
                raise FileNotFoundError(f"{raw}: no image file matches this pattern")
            root = _glob_root(raw)
            items += [_item(f, f.relative_to(root)) for f in files]
        else:
            raise FileNotFoundError(f"{raw}: no such file, folder or pattern")
    first: dict[str, Item] = {}
    for item in items:
        first.setdefault(item.path, item)
    return list(first.values()), ignored


def _item(path: Path, rel: Path) -> Item:
    return Item(str(path), os.path.abspath(path), str(rel))


def _rel(path: Path) -> Path:
    """Annotated name of a listed path: relative paths kept, absolute ones without their root."""
    return Path(*path.parts[1:]) if path.is_absolute() else path


def _glob_root(pattern: str) -> Path:
    """The folder a pattern starts from (`photos` of `photos/**/*.jpg`): annotated names are relative to it."""
    parts = Path(pattern).parts
    magic = next(i for i, s in enumerate(parts) if glob.has_magic(s))
    return Path(*parts[:magic]) if magic else Path(".")


def _is_text(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4096)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\0" not in head


def _lines(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def part_name(items: Sequence[Item]) -> str:
    """A part's file name from its images: the same images, the same name."""
    digest = hashlib.sha1("\n".join(i.path for i in items).encode()).hexdigest()[:20]
    return f"part-{digest}.parquet"


def make_parts(items: Sequence[Item], part_size: int) -> list[dict[str, str]]:
    """The Ray Data rows: one per part, its images as JSON."""
    if part_size < 1:
        raise ValueError(f"--part-size must be >= 1, got {part_size}")
    chunks = [items[i:i + part_size] for i in range(0, len(items), part_size)]
    return [{"part": part_name(c), "items": json.dumps([asdict(i) for i in c])} for c in chunks]


def done_paths(out: Path) -> set[str]:
    """Absolute paths of the images the finished parts in `out` hold."""
    import pyarrow.parquet as pq

    done: set[str] = set()
    for part in sorted((out / FACES_DIR).glob("part-*.parquet")):
        try:
            done.update(pq.read_table(part, columns=["path"]).column("path").to_pylist())
        except Exception as exc:  # noqa: BLE001 - any unreadable part is redone, never trusted
            log.warning("%s: unreadable part (%s): its images are analysed again", part, exc)
            part.unlink()
    return done


def remove_unfinished(out: Path) -> int:
    """Temp files of parts a killed run was writing: never counted, removed."""
    stale = list((out / FACES_DIR).glob(".part-*.tmp"))
    for f in stale:
        f.unlink(missing_ok=True)
    return len(stale)


def write_atomic(table, path: Path) -> None:
    """Write a Parquet file so that it is either whole or absent."""
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def part_summary(table, part: str) -> dict[str, Any]:
    """What the driver counts per part: images, failed images, faces per label."""
    images = table.column("path").to_pylist()
    errors = table.column("error").to_pylist()
    labels = table.column("label").to_pylist()
    failed = {p for p, e in zip(images, errors, strict=True) if e is not None}
    return {"part": part, "images": len(set(images)), "failed": len(failed),
            **{k: sum(1 for x in labels if x == k) for k in LABELS}}


class Analyzer:
    """The Ray Data actor: one `Pipeline` (one ONNX session per model) for
    all the parts it is given; writes each part and returns its counts."""

    def __init__(self, config: PipelineConfig, out: str, annotated: bool) -> None:
        from maskwatch.pipeline import Pipeline

        self.pipeline = Pipeline(config)
        self.faces = Path(out) / FACES_DIR
        self.annotated = Path(out) / ANNOTATED_DIR if annotated else None

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        import pyarrow as pa

        summaries = []
        for part, items_json in zip(batch["part"], batch["items"], strict=True):
            target = self.faces / str(part)
            if target.exists():  # an earlier attempt wrote it, then died: not redone, not counted twice
                import pyarrow.parquet as pq

                summaries.append(part_summary(pq.read_table(target), str(part)))
                continue
            rows = [row for i in json.loads(str(items_json)) for row in self.analyze(Item(**i))]
            table = pa.Table.from_pylist(rows, schema=schema())
            write_atomic(table, target)
            summaries.append(part_summary(table, str(part)))
        return {k: [s[k] for s in summaries] for k in summaries[0]} if summaries else {}

    def analyze(self, item: Item) -> list[dict[str, Any]]:
        """The rows of one image, exactly as `maskwatch detect` analyses it."""
        from maskwatch.decode import DecodeError, decode_file

        size = os.path.getsize(item.path) if os.path.isfile(item.path) else None
        try:
            decoded = decode_file(item.path)
            result = self.pipeline.analyze_decoded(decoded, item.image)
        except (DecodeError, OSError) as exc:
            return result_rows(FrameResult.failed(item.image, _reason(exc, item)).to_dict(), item.path, size)
        except Exception as exc:  # noqa: BLE001 - one odd photo must not stop a run over millions
            log.exception("%s: analysis failed", item.image)
            reason = f"analysis failed: {type(exc).__name__}: {exc}"
            return result_rows(FrameResult.failed(item.image, reason).to_dict(), item.path, size)
        if self.annotated is not None:
            from maskwatch.cli import annotated_name, save_image

            save_image(self.pipeline.annotated(decoded, result), self.annotated / annotated_name(Path(item.rel)))
        return result_rows(result.to_dict(), item.path, size)


def _reason(exc: Exception, item: Item) -> str:
    """The reason `detect` would give; a missing file is named by its path as listed."""
    if isinstance(exc, FileNotFoundError):
        return f"{item.image}: no such file"
    return str(exc)


@dataclass(frozen=True)
class BatchConfig:
    """`cpus_per_actor`: CPUs Ray reserves per actor, also its ONNX threads;
    `actors`: how many (default: the cluster's CPUs / cpus_per_actor);
    `part_size`: images per Parquet part (the unit of retry and resume)."""

    out: Path
    pipeline: PipelineConfig = field(default_factory=lambda: _pipeline_config())
    annotated: bool = False
    part_size: int = 64
    cpus_per_actor: float = 1.0
    actors: int | None = None

    def __post_init__(self) -> None:
        if self.part_size < 1:
            raise ValueError(f"--part-size must be >= 1, got {self.part_size}")
        if self.cpus_per_actor <= 0:
            raise ValueError(f"--cpus-per-actor must be > 0, got {self.cpus_per_actor}")
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"--actors must be >= 1, got {self.actors}")


def _pipeline_config() -> PipelineConfig:
    from maskwatch.pipeline import PipelineConfig

    return PipelineConfig()


@dataclass
class BatchRun:
    """What one run did: images listed, skipped as already done, analysed now."""

    listed: int = 0
    skipped: int = 0
    analysed: int = 0
    failed: int = 0
    parts: int = 0
    labels: dict[str, int] = field(default_factory=lambda: {k: 0 for k in LABELS})
    seconds: float = 0.0


def settings(config: BatchConfig) -> dict[str, Any]:
    """The settings a result depends on, kept in OUT/batch.json so that a
    resumed run cannot mix results of different settings."""
    p = config.pipeline
    return json.loads(json.dumps({"threshold": p.threshold, "detector": asdict(p.detector),
            "classifier": None if p.classifier is None else str(Path(p.classifier).resolve())}))


def check_settings(config: BatchConfig) -> None:
    """Create OUT and record the settings, or refuse settings other than those recorded."""
    (config.out / FACES_DIR).mkdir(parents=True, exist_ok=True)
    path = config.out / SETTINGS_FILE
    wanted = settings(config)
    if path.is_file():
        had = json.loads(path.read_text())
        if had != wanted:
            changed = sorted(k for k in wanted if had.get(k) != wanted[k])
            raise ValueError(f"{config.out}: results there were made with other settings ({', '.join(changed)}: "
                             f"{[had.get(k) for k in changed]}); give another --out, or the same options")
    else:
        path.write_text(json.dumps(wanted, indent=2) + "\n")


def pending(items: Sequence[Item], out: Path) -> list[Item]:
    """The items not in a finished part in `out` (temp files of parts an
    interrupted run was writing are removed: they never count)."""
    removed = remove_unfinished(out)
    if removed:
        log.info("%s: removed %d unfinished part files of an interrupted run", out, removed)
    done = done_paths(out)
    return [i for i in items if i.path not in done]


def run_batch(items: Sequence[Item], config: BatchConfig, progress=None, analyzer: type = Analyzer) -> BatchRun:
    """Analyse the `items` not yet in `config.out` on the Ray instance this
    process is connected to (`ray.init` first). `progress(n)` is called as
    parts finish with their image counts. `analyzer` is the actor class (the
    tests pass one that dies once)."""
    import ray

    t0 = time.perf_counter()
    check_settings(config)
    todo = pending(items, config.out)
    run = BatchRun(listed=len(items), skipped=len(items) - len(todo))
    if not todo:
        run.seconds = time.perf_counter() - t0
        return run
    parts = make_parts(todo, config.part_size)
    actors = config.actors or max(1, int(ray.cluster_resources().get("CPU", 1) // config.cpus_per_actor))
    actors = min(actors, len(parts))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts images, not Ray's blocks
    ds = ray.data.from_items(parts, override_num_blocks=min(len(parts), 10_000))
    with warnings.catch_warnings():
        # Ray Data's default is endless retries: one photo that crashes the process would loop forever.
        # Bounded retries need its `ray_remote_args`, deprecated (not yet removed) in the pinned ray 2.60.
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ds.map_batches(
            analyzer, batch_size=1, batch_format="numpy",
            fn_constructor_kwargs={"config": replace_threads(config.pipeline, config.cpus_per_actor),
                                   "out": str(config.out.resolve()), "annotated": config.annotated},
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=config.cpus_per_actor,
            max_restarts=-1, max_task_retries=MAX_RETRIES)
    for row in ds.iter_rows():
        run.parts += 1
        run.analysed += int(row["images"])
        run.failed += int(row["failed"])
        for k in LABELS:
            run.labels[k] += int(row[k])
        if progress is not None:
            progress(int(row["images"]))
    run.seconds = time.perf_counter() - t0
    return run


def replace_threads(config: PipelineConfig, cpus: float) -> PipelineConfig:
    """ONNX threads per actor = its reserved CPUs, so actors do not fight over cores."""
    from dataclasses import replace

    return replace(config, threads=max(1, int(cpus)))


def read_results(out: Path, columns: list[str] | None = None):
    """All rows of the parts in `out` (or the `columns` named) as one Arrow table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted((out / FACES_DIR).glob("part-*.parquet"))
    tables = [pq.read_table(p, columns=columns, schema=schema()) for p in parts]
    empty = schema().empty_table()
    return pa.concat_tables(tables) if tables else (empty.select(columns) if columns else empty)


# --- command line ---------------------------------------------------------------------------------------------------


def add_batch_parser(sub) -> None:
    from maskwatch.cli import add_model_options

    b = sub.add_parser("batch", help="analyse many photos on Ray (a laptop or a cluster): Parquet, resumable")
    b.add_argument("inputs", nargs="+",
                   help="image folders (searched recursively), glob patterns ('photos/**/*.jpg', quoted), text "
                        "files with one image path a line, or images")
    b.add_argument("--out", type=Path, required=True,
                   help="results folder: faces/part-*.parquet (one row per face), annotated/ with --annotated. "
                        "A re-run with the same --out skips the images already there")
    b.add_argument("--annotated", action="store_true", help="also write an annotated copy of each image")
    b.add_argument("--ray", default="local", metavar="ADDRESS",
                   help="local: start Ray on this machine; auto: join the cluster `ray start` runs here; "
                        "ray://HEAD:10001: connect to a remote cluster. Default: local")
    b.add_argument("--num-cpus", type=int, default=None,
                   help="--ray local: CPUs Ray may use. Default: all of this machine's")
    b.add_argument("--cpus-per-actor", type=float, default=1.0,
                   help="CPUs per actor (also its ONNX threads); more per actor: fewer model copies in memory, "
                        "each image faster. Default: 1")
    b.add_argument("--actors", type=int, default=None,
                   help="actors, each with its own models. Default: the cluster's CPUs / --cpus-per-actor")
    b.add_argument("--part-size", type=int, default=64,
                   help="images per Parquet part, the unit of retry and resume; smaller loses less on a crash, "
                        "larger makes fewer files. Default: 64")
    add_model_options(b)


def connect(address: str, num_cpus: int | None) -> None:
    """Start or join Ray. Locally started workers import this very maskwatch
    (an editable checkout included); on a cluster, maskwatch must be installed
    on every node."""
    import ray
    import ray.data  # noqa: F401 - configures its logging on import; quieted below unless -v

    if not logging.getLogger("maskwatch").isEnabledFor(logging.INFO):
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address == "local":
        source_root = str(Path(__file__).resolve().parents[1])
        pythonpath = os.pathsep.join(p for p in (source_root, os.environ.get("PYTHONPATH")) if p)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **quiet)
    else:
        ray.init(address=address, **quiet)


def start_ray(command: str, address: str, num_cpus: int | None) -> bool | None:
    """Connect unless Ray already runs in this process: True when this call
    started it (the caller shuts it down), False when it was running, None
    when it cannot be reached (the reason printed, naming `command`)."""
    import ray

    if ray.is_initialized():
        return False
    try:
        connect(address, num_cpus)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        print(f"maskwatch {command}: cannot start or reach Ray at {address!r}: {exc}", file=sys.stderr)
        return None
    return True


def cmd_batch(args: argparse.Namespace) -> int:
    from maskwatch.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, make_pipeline, progress_bar

    try:
        import ray
        from ray.data.exceptions import SystemException
    except ImportError:
        print(RAY_HINT, file=sys.stderr)
        return EXIT_USAGE
    items, ignored = list_inputs(args.inputs)
    if ignored:
        print(f"ignored {len(ignored)} file{'s' * (len(ignored) != 1)} without an image suffix", file=sys.stderr)
    if not items:
        print("maskwatch batch: no images in " + ", ".join(args.inputs), file=sys.stderr)
        return EXIT_USAGE
    config = BatchConfig(out=args.out, pipeline=make_pipeline(args).config, annotated=args.annotated,
                         part_size=args.part_size, cpus_per_actor=args.cpus_per_actor, actors=args.actors)
    check_settings(config)  # before Ray starts: a wrong --out fails at once
    todo = pending(items, config.out)
    print(f"{len(items)} images, {len(items) - len(todo)} already done in {args.out}", flush=True)
    if not todo:
        print(f"nothing to do: Parquet: {args.out / FACES_DIR}")
        return EXIT_OK
    started = start_ray("batch", args.ray, args.num_cpus)
    if started is None:
        return EXIT_USAGE
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        print(f"Ray ({args.ray}): {cpus} CPUs, {args.cpus_per_actor:g} per actor", flush=True)
        with progress_bar(len(todo), "batch", sys.stderr.isatty()) as advance:
            run = run_batch(items, config, progress=lambda n: [advance() for _ in range(n)])
    except (ray.exceptions.RayError, SystemException) as exc:
        print(f"maskwatch batch: the run failed: {exc}\nfinished parts are kept in {args.out}: the same command "
              "goes on from there", file=sys.stderr)
        return EXIT_SOME_FAILED
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished parts are kept in {args.out}: the same command goes on from there",
              file=sys.stderr)
        return 130
    finally:
        if started:
            ray.shutdown()
    faces = sum(run.labels.values())
    rate = f", {run.analysed / run.seconds:.2f} images/s" if run.analysed else ""
    print(f"run: {run.analysed} images analysed ({run.failed} failed), {run.skipped} already done; "
          f"{faces} faces: " + ", ".join(f"{run.labels[k]} {k}" for k in LABELS)
          + f" [{run.seconds:.1f} s{rate}]")
    if run.failed:
        import pyarrow.compute as pc

        errors = read_results(args.out, ["image", "error"]).filter(pc.invert(pc.is_null(pc.field("error"))))
        for row in errors.slice(0, 5).to_pylist():
            print(f"{row['image']}: skipped: {row['error']}", file=sys.stderr)
        more = f" ({errors.num_rows - 5} more in the Parquet's error column)" if errors.num_rows > 5 else ""
        print(f"{errors.num_rows} images could not be read{more}", file=sys.stderr)
    print(f"Parquet: {args.out / FACES_DIR} (pandas.read_parquet('{args.out / FACES_DIR}'))")
    if args.annotated:
        print(f"annotated images: {args.out / ANNOTATED_DIR}")
    return EXIT_SOME_FAILED if run.failed else EXIT_OK
