"""Pickles made by CLArena 1.1.0 alone, as its users' saved models are: `torch.save` of whole
backbones and of a whole HAT and WSN LightningModule, each with the outputs CLArena computes.

Run in a fresh interpreter, where this package cannot be imported at all (its import hook taken
off, `clarena_backbones` refused), so every class pickled is CLArena's own:

    python make_clarena_pickles.py OUTPUT_DIR

writes `<case>.pth` (the pickled module) per case and `expected.pt` (inputs and CLArena's outputs,
tensors only). The HAT module is the file CLArena's `SaveModels` callback wrote after two tasks.
"""

import contextlib
import functools
import importlib.abc
import io
import shutil
import sys
from pathlib import Path

import torch

MLP_ARGUMENTS = {"input_dim": 12, "hidden_dims": [10, 8], "output_dim": 6}


class _Refuse(importlib.abc.MetaPathFinder):
    """Makes `clarena_backbones` unimportable in this process."""

    def find_spec(self, fullname, path, target=None):
        if fullname == "clarena_backbones" or fullname.startswith("clarena_backbones."):
            raise ModuleNotFoundError(f"{fullname} is refused here: this process is CLArena's alone")
        return None


def only_clarena() -> None:
    import _clarena_backbones_hook

    _clarena_backbones_hook.uninstall()
    sys.meta_path.insert(0, _Refuse())
    import clarena.backbones

    assert "clarena_backbones" not in clarena.backbones.__file__, clarena.backbones.__file__


def hat_mlp_with_stored_masks():
    from clarena.backbones import HATMaskMLP

    backbone = HATMaskMLP(gate="sigmoid", **MLP_ARGUMENTS)
    for task_id in (1, 2):
        backbone.setup_task_id(task_id)
        for embedding in backbone.task_embedding_t.values():
            torch.nn.init.normal_(embedding.weight, 0.0, 0.05)  # a mix of open and closed units
        backbone.store_mask()
    return backbone


def wsn_module():
    """A WSN LightningModule with task 1's masks stored (CLArena's WSN cannot train its own backbones)."""
    from clarena.heads import HeadsTIL
    from clarena_runs import make_algorithm, make_backbone

    backbone = make_backbone("wsn", "mlp")
    module = make_algorithm("wsn", backbone, HeadsTIL(input_dim=backbone.output_dim))
    module.setup_task_id(task_id=1, num_classes=2, optimizer=functools.partial(torch.optim.SGD, lr=0.1), lr_scheduler=None)
    module.on_train_start()
    module.on_train_end()
    return module


def make(output: Path) -> None:
    from clarena.backbones import CLMLP, MLP, WSNMaskMLP
    from clarena_runs import run, task1_test_images

    torch.manual_seed(0)
    x = torch.randn(5, MLP_ARGUMENTS["input_dim"])
    expected: dict[str, torch.Tensor] = {"x": x}
    cases = {}

    for name, cls in (("MLP", MLP), ("CLMLP", CLMLP)):
        cases[name] = cls(**MLP_ARGUMENTS).eval()
        expected[name] = cases[name](x, "test")[0]

    hat = cases["HATMaskMLP"] = hat_mlp_with_stored_masks().eval()
    for task_id in (1, 2):
        expected[f"HATMaskMLP/{task_id}"] = hat(x, "test", test_task_id=task_id)[0]
    expected["HATMaskMLP/masks"] = torch.cat([mask for task in (1, 2) for mask in hat.masks[task].values()])

    wsn = cases["WSNMaskMLP"] = WSNMaskMLP(**MLP_ARGUMENTS).eval()
    wsn.setup_task_id(1)
    expected["WSNMaskMLP"] = wsn(x, "validation", 0.5)[0]

    # a whole HAT module saved by CLArena's SaveModels after two tasks of CLArena's own training
    hat_run = run("hat", "mlp")
    shutil.copy(hat_run["saved_model"], output / "HAT module.pth")
    expected["HAT module"] = torch.tensor(hat_run["task1_logits"][2])
    wsn = cases["WSN module"] = wsn_module().eval()
    with contextlib.redirect_stdout(io.StringIO()):  # CLArena's WSN prints its masks
        expected["WSN module"] = wsn(task1_test_images("mlp"), stage="test", task_id=1)[0]

    for name, module in cases.items():
        torch.save(module, output / f"{name}.pth")
    torch.save({key: value.detach() for key, value in expected.items()}, output / "expected.pt")
    print(f"made {sorted(cases)} in {output}")


if __name__ == "__main__":
    only_clarena()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    make(Path(sys.argv[1]))
