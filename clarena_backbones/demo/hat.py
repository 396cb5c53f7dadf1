"""HAT (Serra et al., 2018) on `HATMaskMLP`, with CLArena's training step
(`clarena/cl_algorithms/hat.py` in CLArena).

Each task learns a unit mask per layer (a sigmoid of a task embedding, annealed from 1/s_max to
s_max within each epoch). Weights joining two units that an earlier task uses get no gradient,
so the units earlier tasks rely on keep computing exactly what they computed.
"""

import torch

from clarena_backbones.backbones import HATMaskMLP
from clarena_backbones.backbones.hat_mask_backbone import anneal_scale
from clarena_backbones.demo.method import Method


class HAT(Method):
    name = "hat"
    description = "HATMaskMLP, hard attention to the task"

    def build_backbone(self, input_dim, hidden_dims, output_dim):
        return HATMaskMLP(input_dim=input_dim, hidden_dims=hidden_dims, output_dim=output_dim, gate="sigmoid")

    def prepare_task(self, task_id):
        self.backbone.initialize_task_embedding("N01")
        if task_id == 1:
            # M^{<t}: the units used by any earlier task, binary, one entry per unit of each layer.
            self.cumulative_mask = {
                name: torch.zeros(self.backbone.get_layer_by_name(name).weight.shape[0])
                for name in self.backbone.weighted_layer_names
            }

    def loss(self, x, y, batch_idx, num_batches):
        feature, mask, _ = self.backbone(
            x, stage="train", s_max=self.config.s_max, batch_idx=batch_idx, num_batches=num_batches
        )
        sparsity = mask_sparsity(mask, self.cumulative_mask)
        return self.classification_loss(feature, y) + self.config.mask_sparsity_reg_factor * sparsity

    def adjust_gradients(self, batch_idx, num_batches):
        # grad *= 1 - min(M^{<t}[out unit], M^{<t}[in unit]): frozen where both ends are taken.
        self.backbone.clip_grad_by_measure_(self.cumulative_mask, aggregation_mode="min", mode="hat")
        self._compensate_embedding_gradients(batch_idx, num_batches)

    def _compensate_embedding_gradients(self, batch_idx, num_batches):
        # With the mask sigmoid(s * e), small s gives e tiny gradients and large s huge ones;
        # HAT rescales them to what a fixed s_max gate would give (the formula of spec 6.1).
        s_max, threshold = self.config.s_max, self.config.clamp_threshold
        s = anneal_scale(s_max, batch_idx, num_batches)
        for embedding in self.backbone.task_embedding_t.values():
            e = embedding.weight.detach()
            numerator = torch.cosh(torch.clamp(s * e, -threshold, threshold)) + 1
            embedding.weight.grad.mul_(s_max / s * numerator / (torch.cosh(e) + 1))

    def end_task(self, task_id):
        # The binary masks (embedding > 0) are stored in the backbone for test-time use.
        task_mask = self.backbone.store_mask()
        self.cumulative_mask = {
            name: torch.maximum(used, task_mask[name]) for name, used in self.cumulative_mask.items()
        }

    def features(self, x, task_id):
        return self.backbone(x, stage="test", test_task_id=task_id)[0]


def mask_sparsity(mask: dict[str, torch.Tensor], cumulative_mask: dict[str, torch.Tensor]) -> torch.Tensor:
    """HAT's mask-sparsity regulariser ('original' mode): the share of still-free units this task takes.

    Units earlier tasks already use cost nothing; with 10 or fewer free units left it is 0.
    """
    occupied = available = 0.0
    for name, unit_mask in mask.items():
        free = 1 - cumulative_mask[name]
        occupied = occupied + (unit_mask * free).sum()
        available = available + free.sum()
    if available <= 10:
        return torch.zeros(())
    return occupied / available

