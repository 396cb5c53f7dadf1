"""WSN, winning subnetworks (Kang et al., 2022), on `WSNMaskMLP`, with CLArena's step (`clarena.algorithms.wsn`).

A task's subnetwork is stored at 1 bit per weight and is all it needs at test time.
"""

from clarena_backbones.algorithms.wsn import cumulative_mask
from clarena_backbones.backbones import WSNMaskMLP
from clarena_backbones.demo.method import Method


class WSN(Method):
    name = "wsn"
    description = "WSNMaskMLP, winning subnetworks"

    def build_backbone(self, input_dim, hidden_dims, output_dim):
        return WSNMaskMLP(input_dim=input_dim, hidden_dims=hidden_dims, output_dim=output_dim)

    def prepare_task(self, task_id):
        # Fresh scores for every task; the weights themselves carry over.
        self.backbone.initialize_parameter_score("default")
        # M_{t-1}, the union of the stored subnetworks: computed once per task, not at every step.
        self.cumulative_mask = cumulative_mask(self.backbone)

    def loss(self, x, y, batch_idx, num_batches):
        feature, _, _, _ = self.backbone(x, stage="train", mask_percentage=self.config.mask_percentage)
        return self.classification_loss(feature, y)

    def adjust_gradients(self, batch_idx, num_batches):
        # Freeze what earlier tasks use: grad *= 1 - M_{t-1}, for weights and biases.
        self.backbone.clip_grad_by_mask_(*self.cumulative_mask)

    def end_task(self, task_id):
        self.backbone.store_mask(task_id, self.config.mask_percentage)

    def features(self, x, task_id):
        return self.backbone(x, stage="test", mask_percentage=self.config.mask_percentage, test_mask=task_id)[0]
