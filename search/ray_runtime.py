"""The Ray side of the driver: start a local Ray on loopback or join a cluster, run evaluation
tasks with the resources a trial needs, wait, cancel, shut down.

Ray is the only place trials are dispatched; nothing else in bitnas imports it.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import math
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from typing import Callable

# Before Ray is imported: keep every Ray address on loopback and send no usage statistics.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
from ray import exceptions as ray_errors  # noqa: E402

from bitnas.errors import UserError  # noqa: E402
from bitnas.redact import redact_url  # noqa: E402

# Failures of the machinery, not of the trial: the same trial may well succeed when run again.
WORKER_LOST = (ray_errors.WorkerCrashedError, ray_errors.NodeDiedError, ray_errors.ObjectLostError,
               ray_errors.OwnerDiedError, ray_errors.LocalRayletDiedError, ray_errors.OutOfMemoryError)


class RayUnavailable(UserError):
    """The cluster cannot be reached or cannot run the trials as asked."""


class LatencyNodeMissing(RuntimeError):
    """No node offering the latency target's resource measured the trial in time."""


def _node_name() -> str:
    import platform

    return f"{platform.node()}/{ray.get_runtime_context().get_node_id()[:12]}"


def _measure_on_device(genotype_json: str, request, plugins: tuple[str, ...]) -> dict:
    """The nested Ray task that runs on the node offering the target's resource: it measures the
    genotype's freshly built network, so it can run before and while the trial trains elsewhere."""
    import importlib

    from bitnas.evaluators.evaluate import measure_on_target

    for name in plugins:
        importlib.import_module(name)
    measured = measure_on_target(genotype_json, request)
    return {**measured, "latency": {**measured["latency"], "node": _node_name()}}


def _release_freed_memory() -> None:
    """Hand the memory a finished trial freed back to the OS. glibc keeps freed heap in its arenas,
    so an idle worker went on holding the peak of its largest trial (1.3 GiB measured by
    benchmarks/scaling.py) until its next one."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def _evaluate_on_node(genotype_json: str, request, plugins: tuple[str, ...], latency_resource: str | None = None,
                      latency_timeout_s: float = 600.0, teacher=None, supernet=None, checkpoint: bytes | None = None):
    """The Ray task: import the user's plugins, evaluate, and say which Ray node did it. With a
    `latency_resource`, training happens here and the latency is measured by a second task on the
    node that offers that resource (the target device), within `latency_timeout_s`. `teacher`: the
    study's distillation teacher, passed as an object reference that Ray resolves from its object
    store (one copy per node, not one per request); `supernet`: the study's supernet weights, the
    same way, for requests that are scored from it; `checkpoint`: an ASHA promotion's training state
    at its previous rung (an object reference too: Ray hands the task the bytes)."""
    import dataclasses
    import importlib

    from bitnas.evaluators.evaluate import apply_measurement, evaluate
    from bitnas.evaluators.footprint import FootprintMeter

    for name in plugins:
        importlib.import_module(name)
    if teacher is not None:
        request = dataclasses.replace(request, teacher=teacher)
    if supernet is not None and request.supernet_config is not None:
        request = dataclasses.replace(request, supernet=supernet)
    measurement = None
    if latency_resource is not None:  # asked for first: the device measures while this node trains
        task = ray.remote(num_cpus=1, max_retries=0, resources={latency_resource: 1})(_measure_on_device)
        measurement = _DeviceMeasurement(task.remote(genotype_json, request, plugins), latency_resource,
                                         latency_timeout_s)
    # A budget on latency or energy is checked before training, so then the measurement is awaited first.
    premeasured = measurement.get() if measurement and any(
        name in ("latency_ms", "energy_uj") for name, _ in request.limits) else None
    # The evaluation's energy, measured here on the worker (a latency measured on another node
    # is not part of it).
    with FootprintMeter(request.footprint) as meter:
        result = evaluate(genotype_json, request, measure_here=latency_resource is None, premeasured=premeasured,
                          resume=checkpoint)
    result.footprint = meter.footprint.as_dict() if meter.footprint else None
    _release_freed_memory()
    result.node = _node_name()
    if measurement is not None and premeasured is None:
        apply_measurement(result, measurement.get())
    return result


class _DeviceMeasurement:
    """The latency task on the device node, awaited within the configured time."""

    def __init__(self, ref, resource: str, timeout_s: float):
        self.ref, self.resource, self.timeout_s, self.started = ref, resource, timeout_s, time.monotonic()

    def get(self) -> dict:
        try:
            return ray.get(self.ref, timeout=max(0.0, self.timeout_s - (time.monotonic() - self.started)))
        except ray_errors.GetTimeoutError:
            ray.cancel(self.ref, force=True)
            raise LatencyNodeMissing(f"no node offering resource {self.resource!r} measured the latency within "
                                     f"{self.timeout_s:g} s") from None


def _train_teacher(spec):
    """The Ray task that loads the study's teacher from its cache, or trains and caches it."""
    return spec.load_or_train()


def _train_supernet(spec, plugins: tuple[str, ...]):
    """The Ray task (a streaming generator) that trains the study's supernet, or reads it from its
    cache: progress records as it goes, the weights last."""
    import importlib

    for name in plugins:
        importlib.import_module(name)
    yield from spec.load_or_train()


class _Evaluator:
    """Submits evaluations: `.remote(genotype_json, request, plugins)` -> a Ray object ref."""

    def __init__(self, task, latency_resource: str | None, latency_timeout_s: float, teacher=None):
        self.task, self.latency_resource, self.latency_timeout_s = task, latency_resource, latency_timeout_s
        self.teacher = teacher  # an object reference, or None
        self.supernet = None    # an object reference once the study's supernet is trained

    def remote(self, genotype_json: str, request, plugins: tuple[str, ...], checkpoint: bytes | None = None):
        supernet = self.supernet if request.supernet_config is not None else None
        # Put in the object store once, so the bytes travel as a reference, not inside the task spec.
        resume = ray.put(checkpoint) if checkpoint is not None else None
        return self.task.remote(genotype_json, request, plugins, self.latency_resource, self.latency_timeout_s,
                                self.teacher, supernet, resume)


@contextmanager
def _outside_the_working_directory(folder: str):
    """Ray puts the driver's working directory on every worker's import path when it connects, so
    a module there named like a dependency (`mlxtend/__init__.py`) would run inside the workers.
    Connecting from an empty private folder instead makes the workers import installed packages
    and the configured plugins only (paths in the config are absolute by then)."""
    here = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)


class RayRuntime:
    def __init__(self, owns_ray: bool, task_options: dict, latency_resource: str | None = None,
                 scratch: str | None = None):
        self.owns_ray = owns_ray
        self.task_options = task_options
        self.latency_resource = latency_resource
        self.scratch = scratch  # the empty folder Ray was started from (removed at shutdown)
        self.local = False      # True when this runtime started a local Ray (not joined a cluster)

    @classmethod
    def start(cls, *, workers: int, address: str | None, num_cpus: float, num_gpus: float,
              resources: dict[str, float], out: Callable[[str], None], latency_resource: str | None = None) -> RayRuntime:
        owns, scratch = False, None
        if not ray.is_initialized():
            scratch = tempfile.mkdtemp(prefix="bitnas-ray-")
            try:
                with _outside_the_working_directory(scratch):
                    cls._init(workers=workers, address=address, num_cpus=num_cpus, num_gpus=num_gpus, out=out)
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
            owns = True
        runtime = cls(owns, {"num_cpus": num_cpus, "num_gpus": num_gpus, "resources": dict(resources)}, latency_resource,
                      scratch)
        runtime.local = owns and address is None
        runtime._check_resources()
        return runtime

    @staticmethod
    def _init(*, workers: int, address: str | None, num_cpus: float, num_gpus: float,
              out: Callable[[str], None]) -> None:
        if address is None:
            out(f"starting a local Ray on 127.0.0.1 with {workers} worker slot(s) ...")
            # The local node offers no custom resources: a trial that needs one (a device
            # node) is refused by _check_resources instead of waiting forever.
            ray.init(address="local", num_cpus=max(workers, math.ceil(num_cpus * workers)),
                     num_gpus=0 if not num_gpus else None, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, _node_ip_address="127.0.0.1")
            return
        out(f"joining the Ray cluster at {redact_url(address)} ...")
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as error:  # noqa: BLE001 - reported as one line
            raise RayUnavailable(f"cannot join the Ray cluster at {redact_url(address)}: "
                                 f"{redact_url(str(error).strip().splitlines()[0])}") from None

    def _check_resources(self) -> None:
        """A trial asking for a resource no node offers would wait forever: refuse it now."""
        available = ray.cluster_resources()
        wanted = {"CPU": self.task_options["num_cpus"], "GPU": self.task_options["num_gpus"], **self.task_options["resources"]}
        if self.latency_resource:
            wanted[self.latency_resource] = max(wanted.get(self.latency_resource, 0), 1)
        for name, amount in wanted.items():
            if amount and available.get(name, 0) < amount:
                offered = ", ".join(f"{k}={v:g}" for k, v in sorted(available.items())
                                    if not k.startswith(("node:", "memory", "object_store")))
                self.shutdown()
                what = "latency is measured on" if name == self.latency_resource else "each trial needs"
                raise RayUnavailable(f"{what} {name}={amount:g} but no node of the Ray cluster offers it "
                                     f"(the cluster has {offered})")

    def remote_evaluate(self, latency_timeout_s: float = 600.0, teacher_spec=None) -> _Evaluator:
        """The evaluation task. With a `teacher_spec`, the teacher is trained (or read from its
        cache) once, as a Ray task, and every evaluation receives that one result."""
        # Ray does not retry on its own: the driver decides, and records each attempt as a trial.
        # The task name is the worker's process title while it runs: `ray::evaluate_trial`.
        task = ray.remote(max_retries=0, name="evaluate_trial", **self.task_options)(_evaluate_on_node)
        teacher = None
        if teacher_spec is not None:
            teacher = ray.remote(max_retries=0, name="train_teacher", **self.task_options)(_train_teacher).remote(
                teacher_spec)
        return _Evaluator(task, self.latency_resource, latency_timeout_s, teacher)

    def train_supernet(self, spec, plugins: tuple[str, ...]):
        """The supernet task, on as many CPUs as the trials will use (none runs before it is done),
        capped by the largest node: a generator of object references (progress, then weights)."""
        largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=1)
        cpus = max(1.0, min(float(spec.threads), largest))
        task = ray.remote(max_retries=0, name="train_supernet", num_cpus=cpus, num_returns="streaming")(_train_supernet)
        return task.remote(spec, plugins)

    @staticmethod
    def wait(refs: list, timeout: float) -> tuple[list, list]:
        if not refs:
            return [], []
        return ray.wait(refs, num_returns=1, timeout=timeout)

    @staticmethod
    def get(ref):
        return ray.get(ref)

    @staticmethod
    def cancel(ref) -> None:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001 - the task may already be gone; cancelling is best effort
            pass

    @staticmethod
    def worker_lost(error: Exception) -> bool:
        return isinstance(error, WORKER_LOST)

    def local_node_died(self, error: Exception) -> bool:
        """True when this runtime started the local Ray and its node is no longer alive (its
        raylet died): unlike a lost worker, nothing sent to it can run again."""
        if not self.local or not ray.is_initialized():
            return False
        if isinstance(error, ray_errors.LocalRayletDiedError):
            return True
        try:
            return not any(node.get("Alive") for node in ray.nodes())
        except Exception:  # noqa: BLE001 - the control plane itself is gone
            return True

    @staticmethod
    def describe_error(error: Exception) -> str:
        """The underlying error of a failed task as one line, without Ray's traceback framing."""
        if isinstance(error, ray_errors.RayTaskError):
            cause = error.cause if getattr(error, "cause", None) is not None else error
            return f"{type(cause).__name__}: {cause}".strip().splitlines()[0][:500]
        text = str(error).strip().splitlines()
        return f"{type(error).__name__}: {text[0] if text else ''}"[:500]

    def shutdown(self) -> None:
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None
