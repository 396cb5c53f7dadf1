"""WSN, winning subnetworks (Kang et al., 2022), on `WSNMaskMLP`, with CLArena's step (spec 6.4).

Each task learns scores that pick the top `mask_percentage` of every layer's weights (its
subnetwork) and trains those weights, except the ones an earlier task picked: they are frozen.
A task's subnetwork is stored at 1 bit per weight and is all it needs at test time.
"""

import torch

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
        if task_id == 1:
            # M_{t-1}: 1 where any earlier task's subnetwork uses the weight (or bias).
            self.used = {
                parameter: torch.zeros_like(parameter)
                for parameter in self._masked_parameters().values()
            }
        # What may still change, computed once per task rather than at every step.
        self.free = {parameter: 1 - used for parameter, used in self.used.items()}

    def loss(self, x, y, batch_idx, num_batches):
        feature, _, _, _ = self.backbone(x, stage="train", mask_percentage=self.config.mask_percentage)
        return self.classification_loss(feature, y)

    def adjust_gradients(self, batch_idx, num_batches):
        # Freeze what earlier tasks use: grad *= 1 - M_{t-1}, for weights and biases.
        for parameter, free in self.free.items():
            parameter.grad.mul_(free)

    def end_task(self, task_id):
        # Stored packed for test time; the float masks come back for the union M_t = max(M_{t-1}, m_t).
        weight_mask, bias_mask = self.backbone.store_mask(task_id, self.config.mask_percentage)
        task_mask = {("weight", name): mask for name, mask in weight_mask.items()}
        task_mask.update((("bias", name), mask) for name, mask in bias_mask.items() if mask is not None)
        for key, parameter in self._masked_parameters().items():
            self.used[parameter] = torch.maximum(self.used[parameter], task_mask[key])

    def _masked_parameters(self) -> dict[tuple[str, str], torch.nn.Parameter]:
        """The masked parameters, keyed ('weight' | 'bias', layer name)."""
        parameters = {}
        for name in self.backbone.weighted_layer_names:
            layer = self.backbone.get_layer_by_name(name)
            parameters["weight", name] = layer.weight
            if layer.bias is not None:
                parameters["bias", name] = layer.bias
        return parameters

    def features(self, x, task_id):
        return self.backbone(x, stage="test", mask_percentage=self.config.mask_percentage, test_mask=task_id)[0]
