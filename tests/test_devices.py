"""Devices: checkpoints readable on a machine without the device that wrote them, and the device policy
(a trial that reserves GPUs never trains on the CPU unsaid; a process that reserves none sees none)."""

from __future__ import annotations

import io
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
