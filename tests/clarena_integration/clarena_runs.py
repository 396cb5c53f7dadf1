"""Two tasks of continual learning with CLArena 1.1.0's own algorithm classes, driven as its pipeline
drives them (CLArena's clarena/pipelines/cl_main_expr.py): one backbone, TIL heads and algorithm for
the experiment; per task a new `lightning.Trainer`, the datamodule's and the algorithm's
`setup_task_id`, `fit`, then `test` over every seen task.

Imported by the tests (backbones from `clarena.backbones`, i.e. this package's), and run as a script
with `--original-backbones` to repeat runs on CLArena's own backbones (the import hook taken off
first) or to list the keys and shapes of their state dicts:

    python clarena_runs.py --original-backbones --runs hat:mlp finetuning:mlp   (a JSON line on stdout)
    python clarena_runs.py --original-backbones --state-dicts
"""

import argparse
import atexit
import functools
import json
import logging
import os
import shutil
import tempfile
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

ALGORITHMS = ("finetuning", "hat", "hat_const_alpha", "adahat", "fgadahat", "wsn")
BACKBONES = ("mlp", "resnet18")
NUM_TASKS = 2
IMAGE = {"mlp": (3, 32, 32), "resnet18": (3, 16, 16)}  # small ResNet inputs keep the suite quick
BATCH = 16
EPOCHS = 3
RESULT_MARKER = "clarena_runs result: "
PROTOTYPE_SCALE = 1.0
HAT_ARGUMENTS = {"s_max": 400.0, "clamp_threshold": 50.0, "mask_sparsity_reg_factor": 0.75}


def backbone_class_name(algorithm: str, backbone: str) -> str:
    family = {"finetuning": "CL", "wsn": "WSNMask"}.get(algorithm, "HATMask")
    return family + {"mlp": "MLP", "resnet18": "ResNet18"}[backbone]


def make_backbone(algorithm: str, backbone: str) -> torch.nn.Module:
    from clarena import backbones

    cls = getattr(backbones, backbone_class_name(algorithm, backbone))
    if backbone == "mlp":
        channels, height, width = IMAGE[backbone]
        arguments: dict[str, Any] = {"input_dim": channels * height * width, "hidden_dims": [64, 64], "output_dim": 32}
    else:
        arguments = {"input_channels": IMAGE[backbone][0], "output_dim": 512}
    if algorithm not in ("finetuning", "wsn"):
        arguments["gate"] = "sigmoid"
    return cls(**arguments)


def make_algorithm(algorithm: str, backbone: torch.nn.Module, heads: torch.nn.Module) -> Any:
    from clarena import cl_algorithms as A

    if algorithm == "finetuning":
        return A.Finetuning(backbone, heads)
    if algorithm in ("hat", "hat_const_alpha"):
        alpha = 1e-6 if algorithm == "hat_const_alpha" else None
        return A.HAT(backbone, heads, adjustment_mode=algorithm, alpha=alpha, **HAT_ARGUMENTS)
    if algorithm == "adahat":
        return A.AdaHAT(backbone, heads, adjustment_mode="adahat", adjustment_intensity=0.1, **HAT_ARGUMENTS)
    if algorithm == "fgadahat":
        return A.FGAdaHAT(
            backbone,
            heads,
            adjustment_intensity=0.1,
            importance_type="activation_abs",
            importance_summing_strategy="add_latest",
            importance_scheduler_type="linear_sparsity_reg",
            neuron_to_weight_importance_aggregation_mode="min",
            **HAT_ARGUMENTS,
        )
    return A.WSN(backbone, heads, mask_percentage=0.5)


def task_data(task_id: int, count: int, seed: int, image: tuple[int, int, int]) -> TensorDataset:
    """Two classes per task: a fixed random image per class plus noise."""
    prototypes = torch.randn((2, *image), generator=torch.Generator().manual_seed(100 + task_id))
    generator = torch.Generator().manual_seed(1000 * task_id + seed)
    labels = torch.arange(count) % 2
    images = PROTOTYPE_SCALE * prototypes[labels] + torch.randn((count, *image), generator=generator)
    return TensorDataset(images, labels)


def make_datamodule(image: tuple[int, int, int]) -> Any:
    import lightning

    class TwoTasks(lightning.LightningDataModule):
        """What CLArena's algorithms read from a CL datamodule: the current task's loaders and
        `dataset_test`, one entry per seen task, in task order."""

        def __init__(self) -> None:
            super().__init__()
            self.train = {t: task_data(t, 64, 0, image) for t in range(1, NUM_TASKS + 1)}
            self.test = {t: task_data(t, 32, 1, image) for t in range(1, NUM_TASKS + 1)}
            self.task_id = 0
            self.dataset_test: dict[int, TensorDataset] = {}

        def setup_task_id(self, task_id: int) -> None:
            self.task_id = task_id
            self.dataset_test = {t: self.test[t] for t in range(1, task_id + 1)}

        def train_dataloader(self) -> DataLoader:
            return DataLoader(self.train[self.task_id], batch_size=BATCH)

        def val_dataloader(self) -> DataLoader:
            return DataLoader(self.test[self.task_id], batch_size=BATCH)

        def test_dataloader(self) -> list[DataLoader]:
            return [DataLoader(dataset, batch_size=BATCH) for dataset in self.dataset_test.values()]

    return TwoTasks()


def make_recorder() -> Any:
    import lightning

    class Recorder(lightning.Callback):
        """Training losses per batch, and test accuracy and loss per seen task."""

        def __init__(self) -> None:
            self.train_loss: list[float] = []
            self.test: dict[int, list[float]] = {}

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.train_loss.append(float(outputs["loss"]))

        def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
            task = module.get_test_task_id_from_dataloader_idx(dataloader_idx)
            count = len(batch[1])
            total = self.test.setdefault(task, [0.0, 0.0, 0])
            total[0] += float(outputs["acc"]) * count
            total[1] += float(outputs["loss_cls"]) * count
            total[2] += count

    return Recorder()


def save_models_callback() -> type:
    """CLArena's `SaveModels` callback class, read from its own file: `clarena.callbacks` itself also
    imports callbacks that need wandb, which this venv does not install."""
    import importlib.util

    import clarena

    path = os.path.join(os.path.dirname(clarena.__file__), "callbacks", "save_models.py")
    spec = importlib.util.spec_from_file_location("clarena.callbacks.save_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SaveModels


def task1_test_images(backbone_name: str) -> torch.Tensor:
    return task_data(1, 32, 1, IMAGE[backbone_name]).tensors[0]


@functools.cache
def run(algorithm: str, backbone_name: str) -> dict[str, Any]:
    """One experiment; per task: training losses, test accuracy/loss of every seen task, and
    the test-stage logits of task 1's test set. CLArena's `SaveModels` callback (one of its
    defaults) saves the whole module after each task: `saved_model` is its file."""
    import lightning
    from clarena.heads import HeadsTIL

    logging.getLogger("lightning").setLevel(logging.ERROR)
    lightning.seed_everything(0, verbose=False)
    backbone = make_backbone(algorithm, backbone_name)
    heads = HeadsTIL(input_dim=backbone.output_dim)
    model = make_algorithm(algorithm, backbone, heads)
    data = make_datamodule(IMAGE[backbone_name])
    SaveModels = save_models_callback()
    save_dir = tempfile.mkdtemp(prefix=f"clarena-runs-{algorithm}-{backbone_name}-")
    atexit.register(shutil.rmtree, save_dir, True)
    result: dict[str, Any] = {"train_loss": {}, "test_acc": {}, "test_loss": {}, "task1_logits": {}}
    result["saved_model"] = os.path.join(save_dir, "cl_model.pth")
    for task_id in range(1, NUM_TASKS + 1):
        recorder = make_recorder()
        trainer = lightning.Trainer(
            max_epochs=EPOCHS,
            accelerator="cpu",
            devices=1,
            logger=False,
            callbacks=[recorder, SaveModels(save_dir=save_dir)],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        data.setup_task_id(task_id)
        optimizer = functools.partial(torch.optim.SGD, lr=0.1)
        model.setup_task_id(task_id=task_id, num_classes=2, optimizer=optimizer, lr_scheduler=None)
        trainer.fit(model=model, datamodule=data)
        trainer.test(model=model, datamodule=data, verbose=False)
        result["train_loss"][task_id] = recorder.train_loss
        result["test_acc"][task_id] = {t: acc / n for t, (acc, _, n) in recorder.test.items()}
        result["test_loss"][task_id] = {t: loss / n for t, (_, loss, n) in recorder.test.items()}
        model.eval()
        with torch.no_grad():
            output = model(task1_test_images(backbone_name), stage="test", task_id=1)
        model.train()  # Lightning keeps the modes it finds
        result["task1_logits"][task_id] = output[0].tolist()
    return result


MLP_ARGUMENTS = {"input_dim": 12, "hidden_dims": [10, 8], "output_dim": 6}


def state_dict_cases() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every backbone class of CLArena 1.1.0 that it can construct: label -> (class, arguments)."""
    cases: dict[str, tuple[str, dict[str, Any]]] = {
        "MLP": ("MLP", MLP_ARGUMENTS),
        "MLP with BatchNorm": ("MLP", {**MLP_ARGUMENTS, "batch_normalization": True}),
        "CLMLP": ("CLMLP", MLP_ARGUMENTS),
        "HATMaskMLP": ("HATMaskMLP", {**MLP_ARGUMENTS, "gate": "sigmoid"}),
        "HATMaskMLP with shared BatchNorm": ("HATMaskMLP", {**MLP_ARGUMENTS, "gate": "sigmoid", "batch_normalization": "shared"}),
        "WSNMaskMLP": ("WSNMaskMLP", MLP_ARGUMENTS),
    }
    for depth in (18, 34, 50, 101, 152):
        for prefix in ("", "CL"):
            cases[f"{prefix}ResNet{depth}"] = (f"{prefix}ResNet{depth}", {"input_channels": 3, "output_dim": 512})
    return cases


def build_backbone(label: str) -> torch.nn.Module:
    from clarena import backbones

    name, arguments = state_dict_cases()[label]
    return getattr(backbones, name)(**arguments)


def state_dict_layouts() -> dict[str, dict[str, list]]:
    """Key -> [shape, dtype] of the state dict of every case (the values are not needed)."""
    return {
        label: {key: [list(tensor.shape), str(tensor.dtype)] for key, tensor in build_backbone(label).state_dict().items()}
        for label in state_dict_cases()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original-backbones", action="store_true", help="use CLArena's own clarena.backbones")
    parser.add_argument("--runs", nargs="*", default=[], metavar="ALGORITHM:BACKBONE")
    parser.add_argument("--state-dicts", action="store_true", help="print the state dict layouts instead")
    args = parser.parse_args()
    if args.original_backbones:
        import _clarena_backbones_hook

        _clarena_backbones_hook.uninstall()
        import clarena.backbones

        if "clarena_backbones" in clarena.backbones.__name__:
            raise SystemExit("clarena.backbones is still clarena_backbones'")
    if args.state_dicts:
        results: Any = state_dict_layouts()
    else:
        results = {spec: run(*spec.split(":")) for spec in args.runs}
    print(RESULT_MARKER + json.dumps(results))


if __name__ == "__main__":
    main()
