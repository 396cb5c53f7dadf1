"""Finetuning: the unprotected baseline. Every task retrains the whole shared backbone."""

import torch

from clarena_backbones.backbones import CLMLP
from clarena_backbones.demo.method import Method


class Finetune(Method):
    name = "finetune"
    description = "CLMLP, no protection"

    def build_backbone(self, input_dim, hidden_dims, output_dim):
        return CLMLP(input_dim=input_dim, hidden_dims=hidden_dims, output_dim=output_dim)

    def loss(self, x, y, batch_idx, num_batches) -> torch.Tensor:
        feature, _ = self.backbone(x, stage="train")
        return self.classification_loss(feature, y)

    def features(self, x, task_id) -> torch.Tensor:
        return self.backbone(x, stage="test")[0]
