"""`HAT`: Mammoth's model for hard attention to the task (Serra et al., 2018) on `HATAdapter` backbones.

The training step is CLArena's (`clarena.algorithms.hat`): annealed gate, mask-sparsity
regulariser, gradient adjustment by the units earlier tasks use (one fused op), embedding-
gradient compensation, and the binary mask stored at the task's end.
"""

from argparse import ArgumentParser

from torch import Tensor

from clarena_backbones.algorithms.hat import adjust_gradients, cumulative_mask, mask_sparsity
from clarena_backbones.mammoth.hat_adapter import HATAdapter
from clarena_backbones.mammoth.task_il_model import MaskedTaskILModel


class HAT(MaskedTaskILModel):
    NAME = "clarena-hat"
    ADAPTER = HATAdapter
    BACKBONES = "clarena-hat-mlp or clarena-hat-resnet18"

    @staticmethod
    def get_parser(parser: ArgumentParser) -> ArgumentParser:
        parser.add_argument("--hat_reg", type=float, default=0.1, help="Weight of HAT's mask-sparsity regulariser.")
        parser.add_argument(
            "--hat_clamp", type=float, default=50.0, help="Clamp of s*e in HAT's embedding-gradient compensation."
        )
        return parser

    def begin_task(self, dataset) -> None:
        backbone = self.net.backbone
        backbone.setup_task_id(self.current_task)
        backbone.initialize_task_embedding("N01")
        # M^{<t}: the units earlier tasks use; fixed for the whole task
        self.cumulative_mask = cumulative_mask(backbone)

    def observe(self, inputs: Tensor, labels: Tensor, not_aug_inputs: Tensor, epoch: int | None = None) -> float:
        backbone = self.net.backbone
        batch_idx, num_batches = self.batch_position()
        self.opt.zero_grad()
        out, mask = self.net.train_forward(inputs, batch_idx, num_batches)
        loss = self.task_loss(out, labels) + self.args.hat_reg * mask_sparsity(mask, self.cumulative_mask)
        loss.backward()
        adjust_gradients(backbone, self.cumulative_mask, self.net.s_max, self.args.hat_clamp, batch_idx, num_batches)
        self.opt.step()
        return loss.item()

    def end_task(self, dataset) -> None:
        self.net.backbone.store_mask()
