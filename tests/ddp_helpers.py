"""A few HAT and WSN training steps, in one process or one rank of a DistributedDataParallel group."""

import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from clarena_backbones.backbones import HATMaskMLP, WSNMaskMLP  # spawned ranks run without the import hook

STEPS = 3
BATCH = 16  # the whole batch; each of the ranks takes an equal slice
KEEP = 0.5


class Classifier(nn.Module):
    """A masked backbone with a linear head, so DDP sees one module."""

    def __init__(self, method: str):
        super().__init__()
        self.method = method
        if method == "hat":
            self.backbone = HATMaskMLP(10, [12], 8, gate="sigmoid")
        else:
            self.backbone = WSNMaskMLP(10, [12], 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x, step):
        if self.method == "hat":
            feature = self.backbone(x, "train", s_max=400.0, batch_idx=step + 1, num_batches=STEPS)[0]
        else:
            feature = self.backbone(x, "train", mask_percentage=KEEP)[0]
        return self.head(feature)


def previous_task_masks(backbone):
    """A fixed binary mask per layer of 'earlier tasks', as HAT and WSN keep it."""
    generator = torch.Generator().manual_seed(1)
    if isinstance(backbone, HATMaskMLP):
        return {name: torch.randint(0, 2, (fc.out_features,), generator=generator).float()
                for name, fc in zip(backbone.weighted_layer_names, backbone.fc)}
    return {name: (torch.randint(0, 2, fc.weight.shape, generator=generator).float(),
                   torch.randint(0, 2, fc.bias.shape, generator=generator).float())
            for name, fc in zip(backbone.weighted_layer_names, backbone.fc)}


def adjust_gradients(backbone, masks):
    """HAT: the 'hat' rate of the min measure; WSN: no update of weights used by earlier tasks."""
    if isinstance(backbone, HATMaskMLP):
        backbone.clip_grad_by_measure_(masks, "min", "hat")
        return
    for name, fc in zip(backbone.weighted_layer_names, backbone.fc):
        weight_mask, bias_mask = masks[name]
        fc.weight.grad.mul_(1 - weight_mask)
        fc.bias.grad.mul_(1 - bias_mask)


def train(method: str, rank: int = 0, world_size: int = 1, steps: int = STEPS) -> dict[str, torch.Tensor]:
    """Train `steps` steps from seed 0 on this rank's slice of fixed data; returns the parameters."""
    torch.manual_seed(0)
    model = Classifier(method)
    masks = previous_task_masks(model.backbone)
    data = torch.Generator().manual_seed(2)
    xs = torch.randn(STEPS, BATCH, 10, generator=data)
    ys = torch.randint(0, 3, (STEPS, BATCH), generator=data)
    per_rank = BATCH // world_size
    rows = slice(rank * per_rank, (rank + 1) * per_rank)
    network = nn.parallel.DistributedDataParallel(model) if world_size > 1 else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(network(xs[step, rows], step), ys[step, rows])
        loss.backward()
        adjust_gradients(model.backbone, masks)
        optimizer.step()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def rank_main(rank: int, world_size: int, method: str, init_file: str, out_dir: str) -> None:
    """Entry point of one spawned rank: train, then save its parameters."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.save(train(method, rank, world_size), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
