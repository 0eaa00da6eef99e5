"""`maskwatch fleet cameras.yaml`: one `maskwatch watch` per camera, each a Ray actor.

A thin wrapper: every camera runs `run_video` (videorun.py) with the options
`maskwatch watch` takes, parsed by the same parser, inside a Ray actor that
Ray restarts when its process dies (and then runs the camera again). All the
cameras' alerts go to one SQLite event store, with its outbox and delivery as
for `watch`.

SQLite is safe for many processes on one machine, not over a network
filesystem: the camera actors are therefore placed on the node that runs the
fleet command (`NodeAffinitySchedulingStrategy`). More cameras than one
machine can take need a store that many machines can write (not built yet:
see docs/scaling.md).

```yaml
store: events.sqlite                    # every camera's alerts (default: maskwatch-events.sqlite)
options: --alert-after 3 --alert-webhook http://hooks.local/mask   # watch options for every camera
cpus_per_camera: 1                      # CPUs Ray reserves per camera (also its ONNX threads)
cameras:
  - name: door
    source: rtsp://user:pass@10.0.0.5/stream
    options: --detect-every 3 --events out/door.jsonl   # added after the shared options
  - name: hall
    source: http://10.0.0.6/video.mjpg
```
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FLEET_KEYS = {"store", "options", "cpus_per_camera", "cameras"}
CAMERA_KEYS = {"name", "source", "options"}


@dataclass(frozen=True)
class CameraSpec:
    """One camera: its name and its `maskwatch watch` arguments."""

    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class FleetSpec:
    store: Path
    cpus_per_camera: float
    cameras: tuple[CameraSpec, ...]


def _options(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return [str(v) for v in value]
    raise ValueError(f"{where}: options must be a string or a list of strings, got {value!r}")


def parse_fleet(data: Any, name: str = "cameras.yaml") -> FleetSpec:
    """Check the fleet file and build each camera's `watch` arguments; every
    camera's options are parsed now, so a typo fails before anything starts."""
    if not isinstance(data, dict):
        raise ValueError(f"{name}: expected a mapping with `cameras:`, got {type(data).__name__}")
    unknown = set(data) - FLEET_KEYS
    if unknown:
        raise ValueError(f"{name}: unknown key(s) {sorted(unknown)}; known: {sorted(FLEET_KEYS)}")
    cameras = data.get("cameras")
    if not isinstance(cameras, list) or not cameras:
        raise ValueError(f"{name}: `cameras:` must be a non-empty list")
    store = Path(str(data.get("store") or "maskwatch-events.sqlite")).resolve()
    shared = _options(data.get("options"), f"{name}: options")
    cpus = float(data.get("cpus_per_camera", 1))
    if cpus <= 0:
        raise ValueError(f"{name}: cpus_per_camera must be > 0, got {cpus}")
    specs, seen = [], set()
    for i, cam in enumerate(cameras):
        where = f"{name}: camera {i + 1}"
        if not isinstance(cam, dict) or not cam.get("source"):
            raise ValueError(f"{where}: needs at least `source:` (and a `name:`)")
        unknown = set(cam) - CAMERA_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(CAMERA_KEYS)}")
        cam_name = str(cam.get("name") or f"camera{i + 1}")
        if cam_name in seen:
            raise ValueError(f"{where}: the name {cam_name!r} is used twice")
        seen.add(cam_name)
        argv = ("watch", str(cam["source"]), *shared, *_options(cam.get("options"), f"{where} ({cam_name})"),
                "--store", str(store), "--status-every", "0", "--no-show")
        watch_args(CameraSpec(cam_name, argv))  # fails here, naming the camera, on a bad option
        specs.append(CameraSpec(cam_name, argv))
    return FleetSpec(store, cpus, tuple(specs))


class _ArgumentError(ValueError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # raise instead of printing usage and exiting the actor
        raise _ArgumentError(message)


def watch_args(camera: CameraSpec) -> argparse.Namespace:
    """The camera's arguments as `maskwatch watch` parses them."""
    from maskwatch.cli import add_watch_parser

    parser = _Parser(prog="maskwatch")
    add_watch_parser(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    try:
        return parser.parse_args(list(camera.argv))
    except _ArgumentError as exc:
        raise ValueError(f"camera {camera.name!r}: {exc}") from None


def load_fleet(path: Path) -> FleetSpec:
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    return parse_fleet(data, str(path))


class Camera:
    """The Ray actor of one camera: `maskwatch watch` without the console.
    `run` returns when the source ends or `stop` is called (the actor is
    threaded so `stop` and `status` answer while `run` works)."""

    def __init__(self, camera: CameraSpec, threads: int) -> None:
        from dataclasses import replace

        from maskwatch.cli import make_alerting, make_pipeline, video_config, video_outputs

        self.camera = camera
        args = watch_args(camera)
        self.config = video_config(args)
        self.outputs = video_outputs(args)
        self.alerting = make_alerting(args)
        # Built twice (cli.make_pipeline has no config-only form; ~0.3 s per camera start) so that the
        # camera's ONNX threads match the CPUs Ray reserved for it, not every core of the node.
        pipeline = make_pipeline(args)
        self.pipeline = type(pipeline)(replace(pipeline.config, threads=threads))
        self.source_raw = args.input
        self.stopping = threading.Event()
        self.source = None
        self.frames = 0

    def run(self) -> dict[str, Any]:
        from maskwatch.video import open_source
        from maskwatch.videorun import run_video

        self.source = open_source(self.source_raw, self.config.source)
        if self.stopping.is_set():
            self.source.request_stop()
        stats, summary = run_video(self.source, self.pipeline, self.outputs, self.config, stop=self.stopping,
                                   alerting=self.alerting, on_frame=self.on_frame)
        return {"camera": self.camera.name, "source": summary["source"], "frames": stats.frames,
                "fps": round(stats.fps, 1), "people": summary["people"], "alerts": stats.alerts,
                "deliveries_pending": stats.deliveries_pending, "source_stats": summary["source_stats"]}

    def on_frame(self, rgb, result) -> None:
        self.frames += 1

    def status(self) -> dict[str, Any]:
        return {"camera": self.camera.name, "frames": self.frames}

    def stop(self) -> None:
        self.stopping.set()
        if self.source is not None:
            self.source.request_stop()


def start_cameras(fleet: FleetSpec, camera_cls: type = Camera) -> list:
    """One restartable actor per camera, on this node (the SQLite store is here)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(camera_cls)
    return [actor.options(num_cpus=fleet.cpus_per_camera, max_restarts=-1, max_task_retries=-1,
                          max_concurrency=4, scheduling_strategy=here).remote(cam, max(1, int(fleet.cpus_per_camera)))
            for cam in fleet.cameras]


def run_fleet(fleet: FleetSpec, stop: threading.Event, camera_cls: type = Camera, status_every: float = 0.0,
              report=None) -> dict[str, dict[str, Any]]:
    """Run every camera until its source ends or `stop` is set; returns each
    camera's summary, or `{"error": ...}` for one that failed for good (a
    source that cannot be opened; a dead process is restarted by Ray)."""
    import ray

    actors = start_cameras(fleet, camera_cls)
    running = {a.run.remote(): (cam, a) for cam, a in zip(fleet.cameras, actors, strict=True)}
    results: dict[str, dict[str, Any]] = {}
    last = time.monotonic()
    try:
        while running and not stop.is_set():
            done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            for ref in done:
                cam, _ = running.pop(ref)
                results[cam.name] = _outcome(ref, cam)
            if status_every > 0 and report is not None and time.monotonic() - last >= status_every:
                last = time.monotonic()
                report(", ".join(_status(cam, actor) for cam, actor in running.values()))
    finally:
        for _, actor in running.values():
            actor.stop.remote()
        for ref, (cam, _) in running.items():
            results[cam.name] = _outcome(ref, cam, timeout=60)
        for actor in actors:
            ray.kill(actor, no_restart=True)
    return results


def _status(cam: CameraSpec, actor) -> str:
    import ray

    try:
        return f"{cam.name}: {ray.get(actor.status.remote(), timeout=5)['frames']} frames"
    except ray.exceptions.RayError:  # restarting, or busy past the timeout
        return f"{cam.name}: restarting or not answering"


def _outcome(ref, cam: CameraSpec, timeout: float | None = None) -> dict[str, Any]:
    import ray

    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        return {"camera": cam.name, "error": f"{type(cause).__name__}: {cause}"}
    except (ray.exceptions.RayError, TimeoutError) as exc:
        return {"camera": cam.name, "error": f"{type(exc).__name__}: {exc}"}


# --- command line ---------------------------------------------------------------------------------------------------


def add_fleet_parser(sub) -> None:
    f = sub.add_parser("fleet", help="watch many cameras, each as a Ray actor restarted on failure; one event store")
    f.add_argument("config", type=Path, help="YAML file: store, shared watch options, cameras (name, source, options)")
    f.add_argument("--ray", default="local", metavar="ADDRESS",
                   help="local: start Ray here; auto: join the cluster `ray start` runs here; ray://HEAD:10001. "
                        "The cameras run on this node (their SQLite store is here). Default: local")
    f.add_argument("--num-cpus", type=int, default=None, help="--ray local: CPUs Ray may use. Default: all")
    f.add_argument("--status-every", type=float, default=30.0, metavar="SECONDS",
                   help="print frames per camera this often; 0: never. Default: 30")


def cmd_fleet(args: argparse.Namespace) -> int:
    from maskwatch.batch import RAY_HINT, start_ray
    from maskwatch.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, stop_on_signals

    try:
        import ray
    except ImportError:
        print(RAY_HINT.replace("batch", "fleet"), file=sys.stderr)
        return EXIT_USAGE
    fleet = load_fleet(args.config)
    started = start_ray("fleet", args.ray, args.num_cpus)
    if started is None:
        return EXIT_USAGE
    try:
        print(f"{len(fleet.cameras)} cameras on Ray ({args.ray}); alerts stored in {fleet.store}; Ctrl-C to stop",
              flush=True)
        here = next(n for n in ray.nodes() if n["NodeID"] == ray.get_runtime_context().get_node_id())
        wanted, cpus = len(fleet.cameras) * fleet.cpus_per_camera, here["Resources"].get("CPU", 0)
        if wanted > cpus:
            print(f"warning: the cameras want {wanted:g} CPUs, this node has {cpus:g}: some wait until others stop "
                  "(lower cpus_per_camera, or run a fleet per node)", file=sys.stderr)
        with stop_on_signals() as (stop, received):
            results = run_fleet(fleet, stop, status_every=args.status_every,
                                report=lambda line: print(f"{time.strftime('%H:%M:%S')} {line}", flush=True))
    finally:
        if started:
            ray.shutdown()
    failed = 0
    for name, r in results.items():
        if "error" in r:
            failed += 1
            print(f"{name}: failed: {r['error']}", file=sys.stderr)
        else:
            print(f"{name}: {r['source']}: {r['frames']} frames ({r['fps']} fps), {r['people']} people, "
                  f"{r['alerts']} alerts")
    print(f"alerts: stored in {fleet.store}; maskwatch events --store {fleet.store}")
    if received:
        return 128 + received[0]
    return EXIT_SOME_FAILED if failed else EXIT_OK
