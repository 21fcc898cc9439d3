"""Under DDP the detections of a sequence are spread over ranks; rank 0 must see them all, once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Run as two separate processes (the test module itself is not importable from a spawned child).
WORKER = r"""
import json, sys
from pathlib import Path
from types import SimpleNamespace
import torch.distributed as dist
from hvps_lightning.lightning.collect import SequenceCollector
from hvps_lightning.structures.detections import FrameDetections

rank, world_size, folder = int(sys.argv[1]), 2, sys.argv[2]
dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world_size)
collector = SequenceCollector()
# DistributedSampler-style split: rank r gets frames r, r + 2, ...; rank 1 repeats the last
# frame as padding.
frames = [i for i in range(7) if i % world_size == rank] + ([6] if rank == 1 else [])
collector.add([("0002", FrameDetections.empty(f"{i:06d}", (4, 4))) for i in frames])
collector.note("0002", f"{frames[0]:06d}", image_path=f"/img/{frames[0]}.png")
grouped = collector.gather(SimpleNamespace(world_size=world_size, global_rank=rank))
result = {
    "sequences": {k: [f.frame for f in v] for k, v in grouped.items()},
    "notes": sorted("/".join(k) for k in collector.notes) if rank == 0 else [],
}
Path(folder, f"rank{rank}.json").write_text(json.dumps(result))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_gather_sends_every_frame_to_rank_zero_once(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    workers = [subprocess.Popen([sys.executable, str(script), str(rank), str(tmp_path)]) for rank in (0, 1)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0["sequences"] == {"0002": [f"{i:06d}" for i in range(7)]}
    assert rank0["notes"] == ["0002/000000", "0002/000001"]
    assert rank1["sequences"] == {}


DDP_SCRIPT = r"""
import json, sys
import lightning as L
import numpy as np
import torch
from hvps_lightning.data.datamodule import HVPSDataModule
from hvps_lightning.structures.specs import get_spec
from hvps_lightning.lightning.tracker_callback import OfflineTrackerCallback
from hvps_lightning.data.synthetic.detections import make_frame
from hvps_lightning.structures.masks import encode_mask

root, out = sys.argv[1], sys.argv[2]


class GroundTruthDetector(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.spec = get_spec("motchallenge_step")
        self.layer = torch.nn.Linear(1, 1)

    def validation_step(self, batch, batch_idx):
        out = []
        for target, meta in zip(batch["targets"], batch["meta"]):
            ids = target["track_ids"].tolist()
            masks = [encode_mask(m.numpy()) for m in target["masks"]]
            emb = np.eye(64, dtype=np.float32)[[i % 64 for i in ids]].reshape(len(ids), 64)
            out.append((meta["sequence"], make_frame(meta["frame"], masks, labels=target["labels"].numpy(),
                                                     embeddings=emb, image_size=tuple(meta["orig_size"]))))
        return {"detections": out}


callback = OfflineTrackerCallback()
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False, callbacks=[callback])
datamodule = HVPSDataModule(finetune_stage="mot_step", root=root, batch_size=2, clip_length=1, augment=False)
metrics = trainer.validate(GroundTruthDetector(), datamodule=datamodule, verbose=False)[0]
seen = sorted(callback.last_tracks["0002"][0]) if trainer.is_global_zero else []
with open(f"{out}/rank{trainer.global_rank}.json", "w") as handle:
    json.dump({"metrics": metrics, "last": callback.last_metrics, "frames": seen}, handle)
"""


@pytest.mark.slow
def test_offline_tracker_callback_under_ddp(tmp_path: Path, synth_mot_step_root: Path) -> None:
    script = tmp_path / "ddp_validate.py"
    script.write_text(DDP_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(synth_mot_step_root), str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    # every frame of the sequence reached rank 0 although each rank saw half of them
    assert rank0["frames"] == [f"{i:06d}" for i in range(1, 11)]
    assert rank0["metrics"]["val/aq"] == pytest.approx(1.0)
    assert rank0["last"] == rank1["last"]  # computed once, the same numbers on every rank
    assert rank1["metrics"]["val/aq"] == pytest.approx(1.0)
