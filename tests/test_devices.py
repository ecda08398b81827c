"""Devices: checkpoints readable on a machine without the device that wrote them, and the device policy
(a trial that reserves GPUs never trains on the CPU unsaid; a process that reserves none sees none)."""

from __future__ import annotations

import io
import os
import zipfile

import pytest
import torch

from dana_ray.trial import run

FAST = dict(
    model="cnn", model_options={"channels": 8}, dataset="digits", batch_size=32, epochs=2, lr=0.05, lr_decay_epochs=[]
)


def _as_if_saved_on(device: str, state: dict) -> bytes:
    """``torch.save(state)`` with every tensor recorded as stored on ``device`` (the location a GPU run
    writes; the bytes of each tensor are the same), so a machine without that device can be tested."""
    saved = io.BytesIO()
    torch.save(state, saved)
    relabelled = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(saved.getvalue())) as source, zipfile.ZipFile(relabelled, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("data.pkl"):
                cpu = b"X\x03\x00\x00\x00cpu"  # the location, a BINUNICODE string in the pickle
                assert cpu in data
                data = data.replace(cpu, b"X" + len(device).to_bytes(4, "little") + device.encode())
            target.writestr(info, data)
    return relabelled.getvalue()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA reads a CUDA checkpoint here")
@pytest.mark.parametrize("algorithm", ["dana", "dana-slim"])
def test_a_checkpoint_written_on_a_gpu_resumes_on_a_machine_without_one(algorithm, tmp_path):
    """The state a GPU trial saves (its tensors' location ``cuda:0``), read where there is no CUDA: loaded
    with ``map_location``, the trial resumes from it to the undisturbed sha; dana-slim's worker-side
    momenta, loaded into host memory, are placed where its worker computes."""
    from ray import tune

    from dana_ray.sweep.checkpoints import STATE_FILE, readable_state

    config = dict(FAST, algorithm=algorithm, num_workers=3)
    states: list[dict] = []
    whole = run(config, checkpoint=states.append)
    folder = tmp_path / "checkpoint_000000"
    folder.mkdir()
    (folder / STATE_FILE).write_bytes(_as_if_saved_on("cuda:0", states[0]))
    with pytest.raises(RuntimeError, match="CUDA"):  # what a load without map_location does here
        torch.load(folder / STATE_FILE, weights_only=False)
    state, note = readable_state(tune.Checkpoint(str(folder)))
    assert note is None and state is not None
    assert run(config, resume=state)["params_sha256"] == whole["params_sha256"]


# -- the device policy ---------------------------------------------------------------------------------------


def test_a_reservation_of_gpus_without_cuda_is_refused_in_one_line(capsys):
    """``device: auto`` with ``gpus_per_actor > 0`` where torch sees no CUDA: refused, saying why, not a run
    on the CPU at a fraction of the speed."""
    from dana_ray.trial.cli import main

    code = main(["--num-workers", "2", "--epochs", "1", "--gpus-per-actor", "1", "--model", "cnn"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: device: 'auto' with gpus_per_actor 1 reserved, but this process sees no CUDA "), err
    assert f"torch {torch.__version__} " in err and "or set gpus_per_actor: 0 to train on the CPU" in err


def test_the_compile_workers_of_a_process_are_its_threads():
    """``fused_updates`` compiles start no more Inductor workers than the process's reserved cores."""
    import torch._inductor.config

    from dana_ray.engine.threads import use_threads

    before = use_threads(1)
    try:
        assert torch._inductor.config.compile_threads == 1 and os.environ["TORCHINDUCTOR_COMPILE_THREADS"] == "1"
    finally:
        use_threads(before)


PROBE = """
import json, os, sys
import ray
from dana_ray.engine.ray.actors import RemoteWorker
from dana_ray.engine.ray.server import ParameterServer

ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
from dana_ray.config import TrialConfig
trial = TrialConfig.from_dict(json.loads(sys.argv[1]))
config, gpu_config = trial.to_dict(), trial.with_options(gpus_per_actor=1).to_dict()
seen = lambda self: (os.environ.get("CUDA_VISIBLE_DEVICES"), str(getattr(self, "device", "")))
out = {}
worker = RemoteWorker.options(num_cpus=0.5, num_gpus=0).remote(config, 0)
out["worker, no GPU"] = ray.get(worker.__ray_call__.remote(seen))
server = ray.remote(ParameterServer).options(num_cpus=0.5, num_gpus=0).remote(config, "probe", 1)
out["server, no GPU"] = ray.get(server.__ray_call__.remote(seen))
try:
    ray.get(RemoteWorker.options(num_cpus=0.5, num_gpus=1).remote(gpu_config, 0).ready.remote())
    out["worker, 1 GPU"] = "started"
except ray.exceptions.RayActorError as error:
    out["worker, 1 GPU"] = str(error)
print(json.dumps(out))
ray.shutdown()
"""


@pytest.mark.ray
@pytest.mark.skipif(torch.cuda.is_available(), reason="the node's GPU is faked: this machine must have none")
def test_an_actor_that_reserves_no_gpu_sees_none_on_a_node_with_gpus():
    """On a Ray node that advertises a GPU (faked here), a gradient actor and a ParameterServer that reserve
    none run with ``CUDA_VISIBLE_DEVICES`` empty, on the CPU, whatever ``device`` says; a gradient actor that
    reserves one where torch sees no CUDA ends at its start, saying why. (A Ray of its own, in a process of
    its own: the session's shared one advertises no GPU.)"""
    import json
    import subprocess
    import sys

    config = dict(FAST, algorithm="dana", num_workers=2)
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=240,
        env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ADDRESS=""),
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["worker, no GPU"] == ["", "cpu"]
    assert seen["server, no GPU"][0] == ""
    refusal = "device: 'auto' with gpus_per_actor 1 reserved, but this process sees no CUDA device"
    assert refusal in seen["worker, 1 GPU"]


# -- reproducibility --------------------------------------------------------------------------------------------

DROPOUT = dict(FAST, model="wrn", model_options={"depth": 10, "width": 1, "dropout": 0.3}, epochs=1)


def test_dropout_is_seeded_by_the_job_not_by_what_the_process_computed_before():
    """A model with dropout: the same trial twice in one process (the second after the first drew random
    numbers) ends with the same parameters; a gradient's random numbers are its job's."""
    config = dict(DROPOUT, algorithm="dana", num_workers=2, max_steps_per_epoch=6)
    torch.manual_seed(1234)
    first = run(config)["params_sha256"]
    torch.rand(17)  # whatever else the process drew
    assert run(config)["params_sha256"] == first


def test_deterministic_turns_on_deterministic_algorithms_and_off_tf32_for_the_trial():
    seen: list[tuple[bool, bool]] = []
    row = lambda _: seen.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.allow_tf32))
    base = dict(FAST, algorithm="dana", num_workers=2, epochs=1, max_steps_per_epoch=4)
    on = run(dict(base, compute={"deterministic": True}), callback=row)
    off = run(base, callback=row)
    assert seen == [(True, False), (False, True)]
    assert on["params_sha256"] == off["params_sha256"]  # on the CPU, the numbers are deterministic either way


# -- speed on a device ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["dana", "multi-asgd", "dana-dc"])
@pytest.mark.parametrize("d", [10, 272_474])  # not multiples of 4 (272,474: ResNet-20)
def test_each_workers_row_of_a_rules_state_starts_aligned(algorithm, d):
    """A compiled update takes a per-worker row in place only if it is aligned; the rows are padded so that
    each starts on 64 bytes, and the state saved is the rows without the padding."""
    from dana_ray.algorithms import make_algorithm
    from dana_ray.algorithms.base import ROW_ALIGN_BYTES

    rule = make_algorithm(algorithm, torch.zeros(d), 4, lr=0.1, momentum=0.9)
    rows = rule.velocity
    assert rows.shape == (4, d) and all(rows[w].data_ptr() % ROW_ALIGN_BYTES == 0 for w in range(4))
    assert rule.state_dict()["velocity"].shape == (4, d)
