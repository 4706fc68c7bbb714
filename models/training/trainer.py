"""Synchronous minibatch training of a :class:`~models.network.Network` under mpiexec.

The ranks of the job form ``replicas`` groups; each group holds the whole model split by
neurons over a 2-D grid (model parallelism: weights never move, only activations and
their gradients at block borders). Without replicas (the default) there is one group and
no gradient all-reduce at all: each rank updates the weights it owns. With replicas, every
group takes its share of the global batch and the gradients of each weight block are
summed over the groups (data parallelism over model-parallel groups).

Every sample of a step's batch is a function of (data seed, step, sample index) alone; each
rank draws its share of the samples and one plan moves them to the first stage's layout
(:mod:`models.training.feed`), so the same configuration trains the same weights on any
number of ranks (up to float rounding of the exchanges' sums) and a resumed run repeats an
uninterrupted one.

Modes: ``greedy`` trains stage 0 for ``steps`` steps, then stage 1 on stage 0's output,
and so on (the learning-rate schedule restarts per stage); ``joint`` updates every stage
at every step, each on its own objective with its input held fixed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

import distarray as da
from distarray import comm
from distarray.checkpoint import checkpoint_meta, checkpoint_names, load_checkpoint, save_checkpoint

from ..build import build_dataset, build_network, build_preprocess, place, preprocess_from_meta
from ..config import Config, parse_config
from ..extras import MissingExtra
from ..logs import PROGRESS
from ..network import stage_of
from ..optim import make_optimizer
from .checkpoints import checkpoint_path, latest_checkpoint, prune_checkpoints, training_arrays
from .feed import BatchFeed
from .guard import NonFiniteError, SignalFlag, StepVerdict, agree_step, nonfinite_stages
from .metrics import MetricsLog, Progress, TensorBoardLog, refresh_plots
from .monitor import HeldOutBatch, gradient_squares, loss_terms, parameter_norms, replica_mean

_progress = logging.getLogger(PROGRESS)

__all__ = ["Trainer"]


class Trainer:
    """Train the network of ``config`` (see :mod:`models.config`) on every rank of the job.

    Parameters
    ----------
    config : Config
        An effective configuration (:func:`models.config.parse_config`).
    run_dir : path, optional
        Where config.toml, metrics.jsonl, loss.png and checkpoints/ go (rank 0 writes).
        None: nothing is written (tests, notebooks).
    progress : bool
        Show a progress bar on rank 0.
    prefetch : bool
        Prepare each step's batch in a background thread during the step before.
    world : communicator, optional
        The ranks that train (default COMM_WORLD; ``comm.self_comm()`` for a serial twin).

    Collective: construct on every rank of ``world`` and call :meth:`run` on every rank.
    """

    def __init__(self, config: Config, run_dir: str | Path | None = None, progress: bool = False,
                 world: Any = None, prefetch: bool = True):
        self.config = config
        self.run_dir = None if run_dir is None else Path(run_dir)
        world = comm.world() if world is None else world
        self.world = world
        self.is_root = world.Get_rank() == 0
        placement = place(config, world)
        self.grid, self.peers = placement.grid, placement.peers
        self.replicas, self.replica = placement.replicas, placement.replica
        self.network = build_network(config, self.grid)
        self.dataset = build_dataset(config, world, self.run_dir)
        self.network.preprocess = build_preprocess(config, self.dataset, world)
        train = config.train
        self.batch = train.batch
        self.local_batch_size = self.batch // self.replicas
        self.feed = BatchFeed(self.dataset, self.network, self.local_batch_size,
                              self.replica * self.local_batch_size, prefetch)
        self.optimizer = make_optimizer(train.optimizer, self.network.parameters(), train.momentum,
                                        train.weight_decay, train.adagrad_eps, train.state_dtype,
                                        train.state_rounding)
        self.greedy = train.mode == "greedy"
        self.phase_steps = train.steps
        self.total_steps = train.steps * (len(self.network) if self.greedy else 1)
        self.schedule = train.lr_schedule
        self.progress = progress and self.is_root
        self.step = 0
        self.signals = SignalFlag()  # installed while run() runs
        self.stopped_by = ""  # the signal that stopped the last run(), "" when none did
        self._heldout: HeldOutBatch | None = None  # drawn by run(), after any load
        self._said_no_plots = False
        self._grad_squares: dict[int, float] = {}  # by-stage joint steps: gradient norms of freed stages
        if config.train.tensorboard:  # on every rank, so that a missing package stops all of them
            TensorBoardLog.check()

    # -- one step ------------------------------------------------------------------------
    def stages_at(self, step: int) -> list[int]:
        """The stages trained at ``step``."""
        return [min(step // self.phase_steps, len(self.network) - 1)] if self.greedy else list(range(len(self.network)))

    def lr_at(self, step: int) -> float:
        """The learning rate at ``step`` (the schedule restarts with each greedy stage)."""
        return self.schedule(step % self.phase_steps if self.greedy else step)

    def input_batch(self, step: int, next_step: int | None = None) -> da.DistArray:
        """Collective: this rank's block of its replica's share of the batch of ``step``
        (each rank draws its share of the samples; one plan moves them to the first stage's
        layout: see :mod:`models.training.feed`); with ``next_step``, that batch is prepared
        in the background meanwhile."""
        return self.feed(step, next_step)

    def train_step(self, step: int, next_step: int | None = None) -> dict[str, Any]:
        """Collective: one synchronous step (preparing batch ``next_step`` in the background
        when given); returns its metrics record."""
        start = time.perf_counter()
        comm_before = self.network.comm_seconds
        x = self.input_batch(step, next_step)
        t_data = time.perf_counter() - start
        stages = self.stages_at(step)
        self.prepare(stages)
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is found and reported below, once
            losses = self.network.forward(x, stages)
        if self.replicas > 1:  # each group's losses and gradients are means over its share: average them
            losses = replica_mean(self.peers, self.replicas, losses)
        lr = self.lr_at(step)
        verdict, t_reduce = self._backward_and_update(step, stages, losses, lr)
        elapsed = time.perf_counter() - start
        t_comm = self.network.comm_seconds - comm_before + t_reduce
        if not verdict.nonfinite or self.config.train.on_nonfinite == "skip":
            self.step = step + 1  # a step that stops the run is not taken (by_stage: its lower stages are updated)
        record = {
            "step": step,
            "lr": lr,
            "loss": sum(l.total for l in losses.values()),
            "stages": loss_terms(losses),
            "samples_per_s": self.batch / elapsed,
            "seconds": {"step": elapsed, "data": t_data, "comm": t_comm,
                        "compute": max(0.0, elapsed - t_data - t_comm)},
        }
        if verdict.nonfinite:
            record["nonfinite_stages"] = list(verdict.nonfinite)
            record["update"] = "skipped" if self.config.train.on_nonfinite == "skip" else "stopped"
        if verdict.signal:
            record["stop_signal"] = verdict.signal_name
        return record

    def _backward_and_update(self, step: int, stages: list[int], losses: dict, lr: float) -> tuple[StepVerdict, float]:
        """Collective: the gradients of ``stages``, the ranks' agreement on them, and the update.

        ``train.joint_update = "together"``: every stage's gradient, then one update, and
        none if any stage is not finite. ``"by_stage"`` (joint mode): each stage's gradient
        is computed, used and freed before the next stage's, so only one stage's gradients
        exist at a time; a non-finite stage stops the step there (the stages below it are
        already updated) or, with ``on_nonfinite = "skip"``, skips that stage's update only.
        Returns the verdict and the seconds spent averaging gradients over replicas."""
        groups = [[s] for s in stages] if self.config.train.joint_update == "by_stage" else [stages]
        t_reduce, bad, received = 0.0, [], 0
        self._grad_squares = {}
        for group in groups:
            with np.errstate(over="ignore", invalid="ignore"):
                self.network.backward(group)
            grads = self.network.gradients(group)
            if self.replicas > 1:
                t0 = time.perf_counter()
                for g in grads.values():
                    comm.allreduce_array(self.peers, g.local)
                    g.local *= 1.0 / self.replicas
                t_reduce += time.perf_counter() - t0
            verdict = agree_step(self.world, self.signals.received, nonfinite_stages(losses, grads, group), group)
            received = max(received, verdict.signal)
            if verdict.nonfinite:
                bad.extend(verdict.nonfinite)
                if self.config.train.on_nonfinite == "stop":
                    break
                continue
            if len(groups) > 1:  # by stage: its norm now, before its gradients are freed
                self._grad_squares[group[0]] = gradient_squares(grads)
            self.optimizer.step(grads, lr, list(grads), salt=step)
            self.network.project(group)
            if len(groups) > 1:
                self.network.release_gradients(keep=[s for s in stages if s not in group])
                del grads  # the last reference: freed before the next stage's are allocated
        return StepVerdict(received, tuple(bad)), t_reduce

    def prepare(self, stages: list[int]) -> None:
        """Free the gradients and optimiser state of every stage not in ``stages`` (each step
        does this for the stages it trains: in greedy mode the trainer holds one stage's,
        not all; local, no communication)."""
        self.network.release_gradients(keep=stages)
        self.optimizer.release([n for n in self.optimizer.params if stage_of(n) not in stages])

    def _nonfinite(self, record: dict[str, Any]) -> NonFiniteError:
        stages = ", ".join(map(str, record["nonfinite_stages"]))
        return NonFiniteError(
            f"step {record['step']}: the loss or a gradient of stage {stages} is not finite (loss {record['loss']:.4g}, "
            f"lr {record['lr']:.4g}); stopped before updating: no checkpoint written, none removed, the step is "
            f"in metrics.jsonl. Lower train.lr, or set train.on_nonfinite = \"skip\" to skip such steps")

    # -- checkpoints -------------------------------------------------------------------------
    def _arrays(self) -> dict[str, da.DistArray]:
        return training_arrays(self.network, self.optimizer)

    def save(self) -> Path | None:
        """Collective: write a checkpoint of the current step under run_dir (replica 0
        writes; the others wait)."""
        if self.run_dir is None:
            return None
        path = checkpoint_path(self.run_dir, self.step)
        if self.replica == 0:
            meta = {"step": self.step, "config": self.config.as_dict(), "optimizer": self.optimizer.hyper(),
                    "grid": list(self.grid.dims), "ranks": self.world.Get_size(),
                    "data": {"seed": self.config.model.seed, "next_step": self.step}}
            if self.network.preprocess is not None:
                meta["preprocess"] = self.network.preprocess.as_dict()
            save_checkpoint(path, self._arrays(), meta)
            if self.grid.rank == 0:
                prune_checkpoints(self.run_dir, self.config.train.keep_checkpoints)
        comm.barrier(self.world)
        if self.is_root:
            _progress.info(f"checkpoint {path} written (step {self.step})")
        self._plots()
        return path

    def load(self, path: str | Path) -> int:
        """Collective: restore parameters, optimiser state and step from a checkpoint
        (written at any number of ranks); returns the step to continue from. The optimiser
        state the checkpoint holds (the stages being trained when it was written) is
        allocated first."""
        stored = checkpoint_meta(path, self.world)
        written = parse_config(stored["config"])
        if written.model != self.config.model:  # the same metadata on every rank: all raise together
            raise ValueError(f"checkpoint {path} is of another model: saved [model] "
                             f"{written.model}, configured {self.config.model}")
        self._check_schedule(path, written.train)
        saved = [n[len("opt/"):] for n in checkpoint_names(path, self.grid.comm) if n.startswith("opt/")]
        slots = {f"{n}.{slot}" for n in self.optimizer.params for slot in self.optimizer.slots}
        self.optimizer.ensure_state(sorted({n.rsplit(".", 1)[0] for n in saved if n in slots}))
        self.network.preprocess = preprocess_from_meta(self.config, stored)
        self.feed.drop()  # a batch prepared ahead used the preprocessing replaced here
        self._heldout = None  # and so did the held-out batch
        meta = load_checkpoint(path, self._arrays())
        self.step = int(meta["step"])
        return self.step

    def _check_schedule(self, path: str | Path, written: Any) -> None:
        """Refuse a resume whose training schedule would reinterpret the checkpoint: another
        optimiser (its state would not match), another mode, or, in greedy mode, another
        train.steps (the stage boundaries would move)."""
        now = self.config.train
        for key, what in (("optimizer", "its optimiser state is for"), ("mode", "it was written in"),
                          ("state_dtype", "its optimiser state is stored as")):
            if getattr(written, key) != getattr(now, key):
                raise ValueError(f"checkpoint {path}: {what} train.{key} = \"{getattr(written, key)}\", configured "
                                 f"\"{getattr(now, key)}\"; resume with train.{key} = \"{getattr(written, key)}\", "
                                 f"or start again with --fresh")
        if now.mode == "greedy" and written.steps != now.steps:
            raise ValueError(f"checkpoint {path}: written by a greedy run of train.steps = {written.steps} per stage, "
                             f"configured {now.steps}: the stage boundaries would move; resume with train.steps = "
                             f"{written.steps}, or start again with --fresh")

    def resume(self) -> int:
        """Collective: load the newest complete checkpoint of run_dir, if any; returns the step."""
        found = latest_checkpoint(self.run_dir) if self.run_dir is not None else None
        found = comm.broadcast(self.world, None if found is None else str(found))
        return self.load(found) if found is not None else 0

    # -- the loop ------------------------------------------------------------------------------
    def run(self, until: int | None = None) -> list[dict[str, Any]]:
        """Collective: train from the current step to the end (or to step ``until``),
        logging and checkpointing as configured; returns this call's metrics records."""
        train = self.config.train
        stop = self.total_steps if until is None else min(int(until), self.total_steps)
        log = None
        if self.run_dir is not None and self.is_root:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.toml").write_text(self.config.to_toml())
            log = MetricsLog(self.run_dir / "metrics.jsonl", start=self.step)
            if train.tensorboard:
                log.also(TensorBoardLog(self.run_dir / "tensorboard"))
        comm.barrier(self.world)
        if train.heldout_every and self._heldout is None and self.step < stop:  # after any load: its preprocessing
            self._heldout = HeldOutBatch(self.dataset, self.network, self.local_batch_size,
                                         self.replica * self.local_batch_size, self.peers, self.replicas)
        bar = Progress(self.total_steps, self.step, self.progress)
        records = []
        self.stopped_by = ""
        try:
            with self.signals:
                while self.step < stop:
                    record = self.train_step(self.step, self.step + 1 if self.step + 1 < stop else None)
                    records.append(record)
                    bar.update(record["loss"], record["samples_per_s"], ",".join(record["stages"]))
                    last = self.step == stop or "nonfinite_stages" in record or "stop_signal" in record
                    if self._measure(record, last):  # the same steps on every rank
                        if log is not None:
                            log.write(record)
                            _progress.info(self._progress_line(record))
                    if record.get("update") == "stopped":
                        raise self._nonfinite(record)
                    if "stop_signal" in record:
                        self.stopped_by = record["stop_signal"]
                        break
                    every = train.checkpoint_every
                    if every and self.step % every == 0 and self.step < stop:
                        self.save()
        except BaseException:
            self._plots()  # the curves up to the error (a normal end draws them at its save)
            raise
        finally:
            self.feed.drop()
            bar.close()
            if log is not None:
                log.close()
        if records:
            self.save()
        return records

    def _measure(self, record: dict[str, Any], last: bool) -> bool:
        """Collective: whether ``record`` is logged, and if so add the wall-clock time, the
        skipped files, the parameter and gradient norms and (every ``train.heldout_every``
        steps) the held-out objective."""
        train, step = self.config.train, record["step"]
        heldout = bool(train.heldout_every) and step % train.heldout_every == 0
        if not (step % train.log_every == 0 or last or heldout):
            return False
        record["time"] = round(time.time(), 3)
        skipped = self.feed.skipped()  # collective
        if skipped:
            record["skipped_files"] = len(skipped)
        stages = self.stages_at(step)
        record["norms"] = parameter_norms(self.network, stages, self._grad_squares)
        if heldout:
            record["heldout"] = self._heldout.losses(max(stages))
        return True

    @staticmethod
    def _progress_line(record: dict[str, Any]) -> str:
        held = record.get("heldout", {})
        terms = "; ".join(f"stage {s} loss {t['loss']:.5g}" + (f" (held-out {held[s]['loss']:.5g})" if s in held else "")
                          for s, t in record["stages"].items())
        return f"step {record['step']}: {terms}; lr {record['lr']:.3g}; {record['samples_per_s']:.1f} samples/s"

    def _plots(self) -> None:
        """Rank 0: redraw loss.png and curves.png from metrics.jsonl (a failure is a warning)."""
        if self.run_dir is None or not self.is_root:
            return
        try:
            refresh_plots(self.run_dir)
        except MissingExtra as exc:  # a training node without the analysis extra: no figures, said once
            if not self._said_no_plots:
                _progress.info(f"no loss.png or curves.png: {exc}")
                self._said_no_plots = True
        except Exception as exc:  # noqa: BLE001 - a figure must never cost a run or hide its error
            _progress.warning(f"could not draw the curves of {self.run_dir}: {exc}")
