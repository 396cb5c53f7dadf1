"""Stand-in of Mammoth's `ContinualModel`: the attributes, counters and hooks its training loop uses."""

import torch
from torch import nn


class ContinualModel(nn.Module):
    NAME: str
    COMPATIBILITY: list

    @staticmethod
    def get_parser(parser):
        return parser

    def __init__(self, backbone, loss, args, transform, dataset=None):
        super().__init__()
        self.net = backbone
        self.loss = loss
        self.args = args
        self.transform = transform
        self.dataset = dataset
        self.N_CLASSES = dataset.N_CLASSES
        self._cpt = dataset.N_CLASSES_PER_TASK
        self._current_task = 0
        self._epoch_iteration = 0
        self._past_epoch = 0
        self.opt = self.get_optimizer()
        self.device = torch.device("cpu")

    @property
    def current_task(self):
        return self._current_task

    @property
    def n_past_classes(self):
        return self._n_past_classes

    @property
    def n_seen_classes(self):
        return self._n_seen_classes

    @property
    def epoch_iteration(self):
        return self._epoch_iteration

    def get_optimizer(self):
        return torch.optim.SGD(self.net.parameters(), lr=self.args.lr, weight_decay=self.args.optim_wd)

    def get_offsets(self, task):
        return self.dataset.get_offsets(task)

    def forward(self, x):
        return self.net(x)

    def begin_task(self, dataset):
        pass

    def end_task(self, dataset):
        pass

    def meta_begin_task(self, dataset):
        self._epoch_iteration = 0
        self._past_epoch = 0
        self._n_past_classes, self._n_seen_classes = self.get_offsets(self._current_task)
        self.opt = self.get_optimizer()
        self.begin_task(dataset)

    def meta_observe(self, inputs, labels, not_aug_inputs, epoch=None):
        if epoch is not None and epoch != self._past_epoch:
            self._past_epoch = epoch
            self._epoch_iteration = 0
        loss = self.observe(inputs, labels, not_aug_inputs, epoch=epoch)
        self._epoch_iteration += 1
        return loss

    def meta_end_task(self, dataset):
        self.end_task(dataset)
        self._current_task += 1
