"""Does any gradient reach the output of an attention row whose every key is masked?
A training step of the tiny model (fp32, eager, CPU) on a real mini chain shorter than the
crop (padding residues) with fewer MSA sequences than clusters (padding rows): every
AttentionCore call is wrapped to record, for the query rows whose every key carries the
-1e9 mask, the largest |dL/d output| there, against the largest over all rows."""
import sys
from pathlib import Path

import torch

from scalefold.model.attention import AttentionCore
from scalefold.train.config import TrainConfig
from scalefold.train.distributed import discover
from scalefold.train.trainer import Trainer

rows = []
orig = AttentionCore.forward


def forward(self, q, k, v, biases, scale=1.0):
    out = orig(self, q, k, v, biases, scale)
    total = sum(b.detach() for b in biases) if biases else None
    if total is not None and out.requires_grad:
        full = torch.broadcast_to(total, (*out.shape[:-1], k.shape[-2]))
        masked = (full <= -1e8).all(dim=-1)  # [*, H, Q]
        if masked.any():
            rec = {"shape": tuple(out.shape), "rows": int(masked.sum())}
            rows.append(rec)

            def hook(g, rec=rec, masked=masked):
                rec["masked_max"] = float(g[masked].abs().max())
                rec["all_max"] = float(g.abs().max())
            out.register_hook(hook)
    return out


AttentionCore.forward = forward
data = Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/mini")
cfg = TrainConfig(data_dir=data, output_dir=Path("/tmp/gx/run"), preset="tiny",
                  precision="fp32", crop_size=64, max_msa_clusters=32, max_extra_msa=64,
                  max_templates=2, num_recycling_iters=0, num_train_iters=8,
                  val_every_iters=1000, num_workers=0, train_chain_ids=("5pti_A", "3pwp_C"),
                  val_chain_ids=("3pwp_C",), progress=False, seed=3)
t = Trainer(cfg, discover({}), torch.device("cpu"))
t.build_data()
for i, (batch) in enumerate(t.loader):
    feats = batch.features if hasattr(batch, "features") else batch[0]
    print("aatype", tuple(feats["aatype"].shape), "seq_mask sum", float(feats["seq_mask"].sum()),
          "msa_mask rows with any", int((feats["msa_mask"][..., 0].sum(-1) > 0).sum()))
    rows.clear()
    t.train_step(batch, torch.zeros(1))
    worst = max((r.get("masked_max", float("nan")) for r in rows), default=None)
    grads = max((r.get("all_max", 0.0) for r in rows), default=None)
    print(f"step {i}: {len(rows)} calls with masked rows; max |grad| at masked rows {worst}, "
          f"over all rows {grads}")
    if i == 7:
        break
