"""HAT (Serra et al., 2018) on `HATMaskMLP`, with CLArena's training step (`clarena.algorithms.hat`)."""

from clarena_backbones.algorithms.hat import adjust_gradients, cumulative_mask, mask_sparsity
from clarena_backbones.backbones import HATMaskMLP
from clarena_backbones.demo.method import Method


class HAT(Method):
    name = "hat"
    description = "HATMaskMLP, hard attention to the task"

    def build_backbone(self, input_dim, hidden_dims, output_dim):
        return HATMaskMLP(input_dim=input_dim, hidden_dims=hidden_dims, output_dim=output_dim, gate="sigmoid")

    def prepare_task(self, task_id):
        self.backbone.initialize_task_embedding("N01")
        # M^{<t}: the units used by any earlier task, binary, one entry per unit of each layer.
        self.cumulative_mask = cumulative_mask(self.backbone)

    def loss(self, x, y, batch_idx, num_batches):
        feature, mask, _ = self.backbone(
            x, stage="train", s_max=self.config.s_max, batch_idx=batch_idx, num_batches=num_batches
        )
        sparsity = mask_sparsity(mask, self.cumulative_mask)
        return self.classification_loss(feature, y) + self.config.mask_sparsity_reg_factor * sparsity

    def adjust_gradients(self, batch_idx, num_batches):
        adjust_gradients(
            self.backbone, self.cumulative_mask, self.config.s_max, self.config.clamp_threshold, batch_idx, num_batches
        )

    def end_task(self, task_id):
        # The binary masks (embedding > 0) are stored in the backbone for test-time use.
        self.backbone.store_mask()

    def features(self, x, task_id):
        return self.backbone(x, stage="test", test_task_id=task_id)[0]

