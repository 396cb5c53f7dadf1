"""`WSN`: Mammoth's model for winning subnetworks (Kang et al., 2022) on `WSNAdapter` backbones.

The training step is CLArena's (`clarena.algorithms.wsn`): fresh scores per task, the gate
selecting each layer's subnetwork, earlier tasks' weights frozen, the subnetwork stored at the
task's end (1 bit per parameter) and used to test that task.
"""

from torch import Tensor

from clarena_backbones.algorithms.wsn import cumulative_mask
from clarena_backbones.mammoth.task_il_model import MaskedTaskILModel
from clarena_backbones.mammoth.wsn_adapter import WSNAdapter


class WSN(MaskedTaskILModel):
    NAME = "clarena-wsn"
    ADAPTER = WSNAdapter
    BACKBONES = "clarena-wsn-mlp or clarena-wsn-resnet18"

    def begin_task(self, dataset) -> None:
        backbone = self.net.backbone
        backbone.setup_task_id(self.current_task)
        backbone.initialize_parameter_score("default")
        # M_{t-1}, the union of the stored subnetworks: fixed for the whole task
        self.cumulative_mask = cumulative_mask(backbone)

    def observe(self, inputs: Tensor, labels: Tensor, not_aug_inputs: Tensor, epoch: int | None = None) -> float:
        self.opt.zero_grad()
        loss = self.task_loss(self.net.train_forward(inputs), labels)
        loss.backward()
        self.net.backbone.clip_grad_by_mask_(*self.cumulative_mask)
        self.opt.step()
        return loss.item()

    def end_task(self, dataset) -> None:
        self.net.store_mask(self.current_task)
