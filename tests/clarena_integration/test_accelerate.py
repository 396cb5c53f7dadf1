"""accelerate_clarena(): CLArena's own training loops, with and without the fused methods, agree.

Each case trains one of CLArena 1.1.0's algorithms over this package's backbones for two tasks
with Lightning, as CLArena's pipeline does (a Trainer per task, `setup_task_id`, `fit`), once with
CLArena's methods and once accelerated, from the same seed. The parameters after each task, the
loss, the network capacity and every adjustment-rate tensor returned at every step must agree.
"""

import ast
import functools
import importlib.util
import inspect
import pickle
import sys
import textwrap
import warnings

import pytest
import torch

cl_algorithms = pytest.importorskip("clarena.cl_algorithms", reason="CLArena (clarena==1.1.0) is not installed")
lightning = pytest.importorskip("lightning")

from clarena import accelerate  # noqa: E402
from clarena.accelerate import clarena_1_1  # noqa: E402
from clarena.backbones import HATMaskMLP, HATMaskResNet18, WSNMaskMLP  # noqa: E402
from clarena.backbones.adjustment_rates import AdjustmentRates  # noqa: E402
from clarena.heads import HeadsTIL  # noqa: E402  (CLArena's)

TASKS = 2
BATCHES = 3
BATCH = 8
NUM_CLASSES = 3
HAT_ARGS = dict(s_max=400.0, clamp_threshold=50.0, mask_sparsity_reg_factor=0.5)
FG_ARGS = dict(
    adjustment_intensity=0.5,
    importance_type="input_weight_abs_sum",
    importance_summing_strategy="add_latest",
    **HAT_ARGS,
)


def mlp():
    return HATMaskMLP(input_dim=12, hidden_dims=[10, 9], output_dim=6, gate="sigmoid")


def string_keyed_masks(backbone):
    """CLArena 1.1.0's AdaHAT reads `backbone.masks["1"]` while `store_mask` keys by int (a KeyError
    in CLArena with either package's backbones); both runs read the int key instead."""

    class Masks(dict):
        def __getitem__(self, key):
            return super().__getitem__(int(key))

    backbone.masks = Masks()
    return backbone


CASES = {
    "hat": lambda: cl_algorithms.HAT(mlp(), HeadsTIL(6), adjustment_mode="hat", **HAT_ARGS),
    "hat_const_alpha": lambda: cl_algorithms.HAT(mlp(), HeadsTIL(6), adjustment_mode="hat_const_alpha", alpha=0.3, **HAT_ARGS),
    "hat_const_1": lambda: cl_algorithms.HAT(mlp(), HeadsTIL(6), adjustment_mode="hat_const_1", **HAT_ARGS),
    "hat_random": lambda: cl_algorithms.HAT(mlp(), HeadsTIL(6), adjustment_mode="hat_random", **HAT_ARGS),
    "hat_unknown_mode": lambda: cl_algorithms.HAT(mlp(), HeadsTIL(6), adjustment_mode="none", **HAT_ARGS),
    "hat_resnet18": lambda: cl_algorithms.HAT(
        HATMaskResNet18(input_channels=3, output_dim=512, gate="sigmoid"), HeadsTIL(512), adjustment_mode="hat", **HAT_ARGS
    ),
    **{
        f"adahat_{mode}": (
            lambda mode=mode: cl_algorithms.AdaHAT(
                string_keyed_masks(mlp()), HeadsTIL(6), adjustment_mode=mode, adjustment_intensity=0.5, **HAT_ARGS
            )
        )
        for mode in ("adahat", "adahat_no_reg", "adahat_no_sum")
    },
    "fgadahat_linear_min": lambda: cl_algorithms.FGAdaHAT(
        string_keyed_masks(mlp()), HeadsTIL(6), importance_scheduler_type="linear_sparsity_reg",
        neuron_to_weight_importance_aggregation_mode="min", **FG_ARGS,
    ),
    "fgadahat_sparsity_mean": lambda: cl_algorithms.FGAdaHAT(
        string_keyed_masks(mlp()), HeadsTIL(6), importance_scheduler_type="sparsity_reg",
        neuron_to_weight_importance_aggregation_mode="mean", **FG_ARGS,
    ),
    "fgadahat_max_filtered": lambda: cl_algorithms.FGAdaHAT(
        string_keyed_masks(mlp()), HeadsTIL(6), importance_scheduler_type="sparsity_reg",
        neuron_to_weight_importance_aggregation_mode="max", filter_by_cumulative_mask=True, **FG_ARGS,
    ),
    "wsn": lambda: cl_algorithms.WSN(WSNMaskMLP(input_dim=12, hidden_dims=[10, 9], output_dim=6), HeadsTIL(6), mask_percentage=0.5),
}  # fmt: skip

# Modes the replacements leave to CLArena's code (they return CLArena's plain dicts).
UNFUSED = {"hat_random", "hat_unknown_mode", "adahat_adahat_no_sum", "fgadahat_max_filtered", "wsn"}


def snapshot(value):
    """A detached copy of a step output (rates read through the mapping, as a callback would)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if hasattr(value, "items"):
        return {name: snapshot(rate) for name, rate in value.items()}
    return value


class Recorder(lightning.pytorch.Callback):
    KEYS = ("loss", "capacity", "adjustment_rate_weight", "adjustment_rate_bias")

    def __init__(self):
        self.steps = []
        self.rate_types = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # weight-sized rates at each task's last step only (the ResNet's are 11M entries)
        keys = self.KEYS if batch_idx == BATCHES - 1 else self.KEYS[:2]
        self.steps.append({key: snapshot(outputs[key]) for key in keys if key in outputs})
        if "adjustment_rate_weight" in outputs:
            self.rate_types.add(type(outputs["adjustment_rate_weight"]))


def train(case, input_shape=(12,)):
    """Two tasks of CLArena's loop; returns (parameters after each task, per-step outputs, rate types)."""
    lightning.seed_everything(0, verbose=False)
    algorithm = CASES[case]()
    if case == "hat_resnet18":
        input_shape = (3, 16, 16)
    recorder = Recorder()
    states = []
    for task_id in range(1, TASKS + 1):
        x = torch.randn(BATCHES * BATCH, *input_shape)
        y = torch.randint(0, NUM_CLASSES, (BATCHES * BATCH,))
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
        algorithm.setup_task_id(task_id, NUM_CLASSES, functools.partial(torch.optim.SGD, lr=0.05), None)
        trainer = lightning.Trainer(
            max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder],
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Lightning's advice on dataloader workers
            trainer.fit(algorithm, train_dataloaders=loader)
        states.append({key: value.detach().clone() for key, value in algorithm.state_dict().items()})
    return states, recorder.steps, recorder.rate_types


def assert_same(actual, expected, where):
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, torch.Tensor):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, msg=lambda m: f"{where}: {m}")
    else:
        assert actual == expected, where


@pytest.fixture(autouse=True)
def _clarena_methods_restored():
    accelerate.restore_clarena()
    yield
    accelerate.restore_clarena()


@pytest.fixture(autouse=True)
def _flush_denormals():
    # HAT's annealed masks reach denormal floats, which make CPU arithmetic ~100x slower.
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


@pytest.mark.parametrize("case", list(CASES))
def test_accelerated_training_equals_clarena(case):
    expected_states, expected_steps, _ = train(case)
    with accelerate.accelerated_clarena() as active:
        assert active
        states, steps, rate_types = train(case)
    assert len(steps) == len(expected_steps) == TASKS * BATCHES
    for task, (state, expected) in enumerate(zip(states, expected_states), start=1):
        assert_same(state, expected, f"parameters after task {task}")
    for step, (outputs, expected) in enumerate(zip(steps, expected_steps)):
        assert_same(outputs, expected, f"step {step}")
    if case.startswith(("hat", "adahat", "fgadahat")):
        assert rate_types == ({dict} if case in UNFUSED else {AdjustmentRates})


def test_task_two_adjusts_gradients():
    """The cases above compare something: by task 2, HAT freezes part of the network."""
    _, steps, _ = train("hat")
    last = steps[-1]
    assert 0 < last["capacity"].item() < 1
    assert any((rate == 0).any() for rate in last["adjustment_rate_weight"].values())


def test_accelerate_is_idempotent_and_reversible():
    hat, wsn = cl_algorithms.HAT, cl_algorithms.WSN
    originals = (hat.__dict__["clip_grad_by_adjustment"], hat.__dict__["compensate_task_embedding_gradients"], wsn.__dict__["clip_grad_by_mask"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # CLArena 1.1.0's methods are all known: no warning
        assert accelerate.accelerate_clarena()
    replaced = hat.__dict__["clip_grad_by_adjustment"]
    assert replaced is not originals[0] and replaced.__clarena_accelerated__ and accelerate.is_accelerated()
    for module, class_name, name in clarena_1_1.METHODS:
        assert getattr(sys.modules[module], class_name).__dict__[name].__clarena_accelerated__, (class_name, name)
    assert accelerate.accelerate_clarena()
    assert hat.__dict__["clip_grad_by_adjustment"] is replaced  # not wrapped twice
    accelerate.restore_clarena()
    assert (hat.__dict__["clip_grad_by_adjustment"], hat.__dict__["compensate_task_embedding_gradients"], wsn.__dict__["clip_grad_by_mask"]) == originals
    assert not accelerate.is_accelerated()
    accelerate.restore_clarena()  # nothing to restore


def test_context_manager_keeps_an_earlier_acceleration():
    accelerate.accelerate_clarena()
    with accelerate.accelerated_clarena():
        pass
    assert accelerate.is_accelerated()


def test_callback_from_a_hydra_config():
    from hydra.utils import instantiate

    callback = instantiate({"_target_": "clarena.accelerate.AccelerateCallback"})
    assert isinstance(callback, lightning.pytorch.Callback)
    assert type(pickle.loads(pickle.dumps(callback))) is accelerate.AccelerateCallback
    algorithm = CASES["hat"]()
    algorithm.setup_task_id(1, NUM_CLASSES, functools.partial(torch.optim.SGD, lr=0.05), None)
    trainer = lightning.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[callback],
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 12), torch.randint(0, 3, (8,))), batch_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(algorithm, train_dataloaders=loader)
    assert accelerate.is_accelerated()


def rewritten(tmp_path, cls, name, change=None):
    """CLArena's `cls.name` printed again by `ast.unparse` (other line breaks and quotes, no
    comments), after `change` edits its AST, and loaded from a file in the namespace of CLArena's
    module."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls.__dict__[name])))
    if change is not None:
        change(tree.body[0])
    path = tmp_path / f"{cls.__name__}_{name}.py"
    path.write_text(f"class {cls.__name__}:\n" + textwrap.indent(ast.unparse(tree), "    ") + "\n")
    namespace = dict(vars(sys.modules[cls.__module__]))
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace[cls.__name__].__dict__[name]


def test_reformatted_clarena_methods_are_still_replaced(tmp_path, monkeypatch):
    for module, class_name, name in clarena_1_1.METHODS:
        cls = getattr(sys.modules[module], class_name)
        reformatted = rewritten(tmp_path, cls, name)
        assert inspect.getsource(reformatted) != inspect.getsource(cls.__dict__[name])
        monkeypatch.setattr(cls, name, reformatted)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert accelerate.accelerate_clarena()
        for module, class_name, name in clarena_1_1.METHODS:
            assert getattr(sys.modules[module], class_name).__dict__[name].__clarena_accelerated__, (class_name, name)
    finally:
        accelerate.restore_clarena()  # before monkeypatch puts CLArena's own methods back


def test_a_changed_clarena_method_is_left_alone_with_a_warning(tmp_path, monkeypatch):
    hat = cl_algorithms.HAT
    changed = rewritten(tmp_path, hat, "clip_grad_by_adjustment", change=lambda function: function.body.insert(0, ast.Pass()))
    monkeypatch.setattr(hat, "clip_grad_by_adjustment", changed)
    try:
        with pytest.warns(
            RuntimeWarning,
            match=r"clarena\.cl_algorithms\.hat\.HAT\.clip_grad_by_adjustment is not an implementation this package's "
            r"adapters were written for \(clarena_1_1\); accelerate_clarena\(\) leaves it as it is",
        ):
            assert accelerate.accelerate_clarena()  # the other methods are replaced
        assert hat.__dict__["clip_grad_by_adjustment"] is changed
        assert hat.__dict__["compensate_task_embedding_gradients"].__clarena_accelerated__
    finally:
        accelerate.restore_clarena()
