"""Training at 1-4 ranks against the same training on one rank (COMM_SELF twin).

Forward outputs, decoder-side gradients and updates are computed where the weights live and
would be bit-identical at any rank count, but the decoder's reconstruction and the pooling's
input gradient add contributions of several ranks (an accumulate, in rank order), so the
weights agree to float rounding: ~1e-12 relative in float64, ~1e-5 in float32 after a few
steps. At a fixed rank count everything is deterministic: a resumed run equals an
uninterrupted one bit for bit.
"""

from __future__ import annotations


import numpy as np
import pytest

import distarray as da
from distarray import comm as _comm
from models.autoencoder import SparseAutoencoder
from models.config import parse_config
from models.training.trainer import Trainer

from ...distarray.mpi_helpers import grid, rank, size

pytestmark = pytest.mark.mpi


def config(mode="greedy", dtype="float64", optimizer="sgd", replicas=1, grid_dims="auto", steps=3, **train):
    return parse_config({
        "model": {"input": [12, 11, 1], "seed": 4, "dtype": dtype, "stages": [
            {"k": 4, "maps": 3, "pool": 2, "lcn": 3, "eps": 1e-3},
            {"k": 3, "maps": 2, "pool": 2, "lcn": 0, "lambda": 0.2, "eps": 1e-3}]},
        "train": {"mode": mode, "steps": steps, "batch": 4, "optimizer": optimizer, "lr": 0.01,
                  "schedule": "cosine", "warmup": 1, **train},
        "data": {"source": "bundled", "face_share": 0.25},
        "run": {"replicas": replicas, "grid": grid_dims},
    })


def weights(trainer: Trainer) -> dict[str, np.ndarray]:
    """Every parameter and optimiser state, whole (collective)."""
    out = {f"param/{n}": p.allgather() for n, p in trainer.network.parameters().items()}
    out.update({f"opt/{n}": s.allgather() for n, s in trainer.optimizer.state.items()})
    return out


def losses(records) -> np.ndarray:
    return np.array([[r["stages"][s][t] for s in sorted(r["stages"]) for t in ("reconstruction", "sparsity")]
                     for r in records])




@pytest.mark.parametrize("mode,dtype,optimizer", [("greedy", "float64", "sgd"), ("joint", "float64", "adagrad"),
                                                  ("joint", "float32", "sgd")])
def test_training_matches_one_rank(mode, dtype, optimizer):
    cfg = config(mode, dtype, optimizer)
    trainer = Trainer(cfg)
    twin = Trainer(cfg, world=_comm.self_comm())
    got, want = trainer.run(), twin.run()
    assert [r["step"] for r in got] == list(range(trainer.total_steps))
    rtol = 1e-10 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(losses(got), losses(want), rtol=rtol)
    ours, theirs = weights(trainer), {n: a for n, a in weights(twin).items()}
    for name in theirs:  # atol: elements near 0 carry the rounding of their larger neighbours' sums
        scale = float(np.abs(theirs[name]).max())
        np.testing.assert_allclose(ours[name], theirs[name], rtol=rtol, atol=rtol * 1e-2 * max(scale, 1.0) * 2,
                                   err_msg=name)
    assert not np.array_equal(theirs["param/stage0.encoder.weight"], Trainer(cfg, world=_comm.self_comm())
                              .network.parameters()["stage0.encoder.weight"].local), "training changed nothing"


@pytest.mark.skipif(size() % 2, reason="replicas need an even number of ranks")
def test_replicas_match_one_group():
    trainer = Trainer(config("joint", replicas=2))
    twin = Trainer(config("joint"), world=_comm.self_comm())
    assert trainer.grid.size == size() // 2
    got, want = trainer.run(), twin.run()
    np.testing.assert_allclose(losses(got), losses(want), rtol=1e-10)
    ours, theirs = weights(trainer), weights(twin)
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-10, atol=1e-12, err_msg=name)


def resume_is_exact(cfg, shared_dir, at: int) -> tuple[Trainer, Trainer]:
    """Resume the checkpoint at step ``at`` in ``shared_dir`` and check that the rest of the
    run is the same bits as a run that never stopped; returns (resumed, uninterrupted)."""
    resumed = Trainer(cfg, shared_dir)
    assert resumed.resume() == at
    rest = resumed.run()
    straight = Trainer(cfg)
    records = straight.run()
    np.testing.assert_array_equal(losses(rest), losses(records[at:]))
    ours = weights(resumed)
    for name, value in weights(straight).items():
        np.testing.assert_array_equal(ours[name], value, err_msg=name)
    return resumed, straight


def test_resume_equals_uninterrupted(shared_dir):
    cfg = config("greedy", "float32")
    first = Trainer(cfg, shared_dir)
    first.run(until=4)  # into stage 1, with the momentum of both stages in the checkpoint
    assert first.step == 4
    resumed, _ = resume_is_exact(cfg, shared_dir, 4)
    if rank() == 0:
        steps = [r["step"] for r in map(__import__("json").loads, (shared_dir / "metrics.jsonl").open())]
        assert steps == list(range(resumed.total_steps))


def test_load_on_another_grid(shared_dir):
    """A checkpoint written on this job's grid loads into a 1 x N grid (a reshard)."""
    cfg = config("joint")
    trainer = Trainer(cfg, shared_dir)
    trainer.run(until=2)
    other = Trainer(config("joint", grid_dims=[1, size()]))
    assert other.load(shared_dir / "checkpoints" / "step-00000002") == 2
    ours, theirs = weights(other), weights(trainer)
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    # and training goes on alike from there
    np.testing.assert_allclose(losses(other.run()), losses(trainer.run()), rtol=1e-10)


def test_objective_gradient_by_finite_differences():
    """The stage's gradients at N ranks against central differences of the (collective)
    objective, perturbing one global weight at a time on the rank that owns it."""
    dims = da.factor_grid(size(), (9, 8))
    ae = SparseAutoencoder((9, 8, 2), 3, 4, 2, grid(dims), lam=0.1, eps=1e-3, seed=5, dtype=np.float64)
    x_global = np.random.default_rng(1).standard_normal((9, 8, 2, 3))
    x = da.from_global(x_global, ae.grid, split=(0, 1, None, None))
    ae.forward(x)
    ae.backward()
    rng = np.random.default_rng(0)
    h = 1e-5
    for name, param in ae.parameters().items():
        grad = ae.gradients()[name].allgather()
        for _ in range(8):
            index = tuple(int(rng.integers(n)) for n in param.shape)
            owner = param.layout.owner(index)
            local = tuple(i - lo for i, lo in zip(index, param.box.lo))
            values = []
            for step in (h, -h):
                if param.grid.rank == owner:
                    param.local[local] += step
                values.append(ae.forward(x)[0].total)
                if param.grid.rank == owner:
                    param.local[local] -= step
            fd = (values[0] - values[1]) / (2 * h)
            assert abs(fd - grad[index]) <= 1e-6 * max(abs(fd), 1e-3 * np.sqrt(np.mean(grad**2))), (name, index)


def learning_config(dtype="float64", steps=3):
    """Tied, unit-norm filters on contrast-normalised, whitened input."""
    raw = config("greedy", dtype, steps=steps).as_dict()
    raw["model"]["whiten"] = 5
    raw["model"]["input_lcn"] = 3
    for stage in raw["model"]["stages"]:
        stage.update(tied=True, norm="encoder")
    raw["model"]["input"] = [16, 15, 1]
    raw["model"]["stages"][0]["stride"] = 2  # 16 x 15 -> 7 x 6 -> 6 x 5 -> 4 x 3
    raw["model"]["stages"][1]["k"] = 2  # -> 3 x 2 -> 2 x 1
    return parse_config(raw)


def test_whitened_input_is_the_same_bits_at_any_rank_count():
    trainer, twin = Trainer(learning_config()), Trainer(learning_config(), world=_comm.self_comm())
    lcn, zca = trainer.network.preprocess.steps
    assert lcn == twin.network.preprocess.steps[0] and np.array_equal(zca.kernel, twin.network.preprocess.steps[1].kernel)
    images = trainer.dataset.batch(7, 4)
    ours = trainer.network.input_array(images).allgather()
    theirs = twin.network.input_array(images).local
    assert np.array_equal(ours, theirs)
    assert not np.allclose(ours, images)  # whitened, not passed through


def test_unit_norm_projection_is_the_same_bits_at_any_rank_count():
    trainer, twin = Trainer(learning_config()), Trainer(learning_config(), world=_comm.self_comm())
    for t in (trainer, twin):
        for name, p in t.network.parameters().items():
            scale = np.random.default_rng(3).uniform(0.5, 3.0, p.shape)  # global: the same filters scaled alike
            p.local *= scale[p.layout.box(p.grid.rank).slices()]
        t.network.project(range(len(t.network)))
    ours, theirs = weights(trainer), weights(twin)
    assert set(ours) == {"param/stage0.encoder.weight", "param/stage1.encoder.weight"}  # tied: no decoders
    for name in theirs:
        assert np.array_equal(ours[name], theirs[name]), name
        assert np.allclose(np.linalg.norm(ours[name], axis=3), 1.0, atol=1e-12), name


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tied_unit_norm_whitened_training_matches_one_rank(dtype):
    cfg = learning_config(dtype, steps=4)
    trainer, twin = Trainer(cfg), Trainer(cfg, world=_comm.self_comm())
    got, want = trainer.run(), twin.run()
    rtol = 1e-10 if dtype == "float64" else 1e-4  # float32: the accumulate's rank order, amplified by momentum
    np.testing.assert_allclose(losses(got), losses(want), rtol=rtol)
    ours, theirs = weights(trainer), weights(twin)
    for name in theirs:  # atol: elements near 0 carry the rounding of their larger neighbours' sums
        scale = float(np.abs(theirs[name]).max())
        np.testing.assert_allclose(ours[name], theirs[name], rtol=rtol, atol=rtol * 1e-2 * max(scale, 1.0) * 2,
                                   err_msg=name)
        if name.startswith("param/"):
            assert np.allclose(np.linalg.norm(ours[name], axis=3), 1.0, atol=1e-5), name


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_sixteen_bit_state_follows_one_rank_and_resumes_exactly(shared_dir, rounding):
    """bfloat16 optimiser state: uint16 arrays, training that follows the one-rank twin (a
    state element may round the other way where the two runs' gradients differ in the last
    float32 bit), and a resume that is the same bits as not stopping."""
    cfg = config("joint", "float32", "adagrad", steps=4, state_dtype="bfloat16", state_rounding=rounding)
    trainer = Trainer(cfg, shared_dir)
    twin = Trainer(cfg, world=_comm.self_comm())
    got, want = trainer.run(until=2), twin.run()
    assert all(s.local.dtype == np.uint16 for s in trainer.optimizer.state.values())
    np.testing.assert_allclose(losses(got), losses(want)[:2], rtol=1e-4)
    _, straight = resume_is_exact(cfg, shared_dir, 2)
    theirs = weights(twin)
    for name, value in weights(straight).items():
        if name.startswith("param/"):
            np.testing.assert_allclose(value, theirs[name], rtol=1e-3, atol=1e-3 * float(np.abs(value).max()),
                                       err_msg=name)


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_joint_update_by_stage_is_the_same_training(optimizer):
    """by_stage holds one stage's gradients at a time and trains to the same bits as together."""
    together = Trainer(config("joint", "float32", optimizer, steps=3))
    by_stage = Trainer(config("joint", "float32", optimizer, steps=3, joint_update="by_stage"))
    a, b = together.run(), by_stage.run()
    np.testing.assert_array_equal(losses(a), losses(b))
    assert [r["norms"] for r in a] == [r["norms"] for r in b] and all(r["norms"]["1"]["grad"] > 0 for r in b)
    ours = weights(by_stage)
    for name, value in weights(together).items():
        np.testing.assert_array_equal(ours[name], value, err_msg=name)
