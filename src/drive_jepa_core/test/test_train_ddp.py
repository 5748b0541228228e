"""DDP: two CPU processes (gloo) train 3 steps on different shards; their weights must stay identical."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from _train_scenes import write_scenes
from safetensors.torch import load_file, save_file

from drive_jepa_core.train.config import load_train_config
from drive_jepa_core.train.loop import Trainer

TINY = ["data.image_width=128", "data.image_height=64", "train.batch_size=1", "train.max_steps=3",
        "model.encoder_overrides={depth: 1}", "model.mtd=false",
        "model.planner={num_proposals: 4, d_model: 32, d_ffn: 64, num_heads: 4, head_hidden: 32}"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, scenes: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    trainer = Trainer(load_train_config("tiny", TINY), scenes, out, device="cpu", progress=False)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    first_batch = next(iter(trainer._loader(0, 0)))["scene_path"]
    summary = trainer.run()
    trainer.close()
    state = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
    save_file(state, os.path.join(out, f"rank{rank}.safetensors"))
    save_file(initial, os.path.join(out, f"init{rank}.safetensors"))
    with open(os.path.join(out, f"rank{rank}.txt"), "w") as fh:
        fh.write(f"{summary['steps']} {summary['world_size']} {first_batch[0]}\n")


@pytest.mark.timeout(300)
def test_two_process_ddp_keeps_weights_identical(tmp_path):
    scenes = tmp_path / "scenes"
    write_scenes(scenes, 4)
    out = tmp_path / "run"
    out.mkdir()
    mp.start_processes(_worker, args=(2, _free_port(), str(scenes), str(out)), nprocs=2, join=True,
                       start_method="spawn")
    w0, w1 = load_file(out / "rank0.safetensors"), load_file(out / "rank1.safetensors")
    init = load_file(out / "init0.safetensors")
    assert w0.keys() == w1.keys()
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)
    assert any(not torch.equal(w0[k], init[k]) for k in w0)  # it did train
    info = [(out / f"rank{r}.txt").read_text().split() for r in range(2)]
    assert info[0][:2] == ["3", "2"] and info[1][:2] == ["3", "2"]
    assert info[0][2] != info[1][2]  # each rank read its own shard
    assert (out / "model.safetensors").exists()  # rank 0 saved
