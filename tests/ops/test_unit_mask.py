import pytest
import torch
from op_helpers import DEVICES, assert_refused_on_both_paths, ops_called, requires_native, run_both, unit_mask_gradient_bound

from clarena import ops

DTYPES = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 1e-2, torch.bfloat16: 5e-2}
SHAPES = [(16, 10), (4, 6, 5, 5), (3, 8, 1, 1), (2, 5, 3), (0, 6)]


def sample_inputs(device="cpu", dtype=torch.float32, requires_grad=False):
    """(input, mask, relu): MLP and conv layouts, binary and soft masks, channels-last inputs."""
    samples = []
    for shape in SHAPES:
        # keep pre-activations away from the ReLU kink so finite differences are valid
        x = torch.randn(shape, device=device, dtype=dtype)
        x = x + torch.where(x >= 0, 0.1, -0.1).to(dtype)
        soft = torch.rand(shape[1], device=device, dtype=dtype) * 0.9 + 0.1
        binary = torch.randint(0, 2, (shape[1],), device=device).to(dtype)
        for mask in (soft, binary):
            for relu in (True, False):
                samples.append((x, mask, relu))
    x = torch.randn(2, 6, 4, 4, device=device, dtype=dtype).to(memory_format=torch.channels_last)
    samples.append((x, torch.rand(6, device=device, dtype=dtype), True))
    return [(x.clone().requires_grad_(requires_grad), m.clone().requires_grad_(requires_grad), r) for x, m, r in samples]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_forward_and_backward_equal_the_reference(device, dtype):
    tolerance = DTYPES[dtype]
    for x, mask, relu in sample_inputs(device, dtype, requires_grad=True):
        native, reference, native_args, reference_args = run_both(ops.unit_mask, [x, mask, relu])
        assert torch.equal(native, reference)
        grad = torch.randn_like(native)
        native.backward(grad)
        reference.backward(grad)
        torch.testing.assert_close(native_args[0].grad, reference_args[0].grad, atol=tolerance, rtol=tolerance)
        torch.testing.assert_close(native_args[1].grad, reference_args[1].grad, atol=tolerance * 10, rtol=tolerance)


@requires_native
def test_every_size_runs_the_kernels():
    mask = torch.rand(10, requires_grad=True)
    x = torch.randn(1, 10, requires_grad=True)
    called = ops_called(lambda: ops.unit_mask(x, mask, relu=True).sum().backward())
    assert {"clarena::unit_mask", "clarena::unit_mask_backward"} <= called


def test_mask_broadcasts_over_the_unit_dimension():
    x = torch.tensor([[1.0, -2.0, 3.0], [-1.0, 2.0, -3.0]])
    mask = torch.tensor([1.0, 0.5, 0.0])
    assert ops.unit_mask(x, mask).tolist() == [[1.0, -1.0, 0.0], [-1.0, 1.0, -0.0]]
    assert ops.unit_mask(x, mask, relu=True).tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def test_gradcheck_float64():
    for x, mask, relu in sample_inputs(dtype=torch.float64, requires_grad=True):
        if relu and bool((mask == 0).any()):
            continue  # a zero mask puts the ReLU at its kink, where finite differences are meaningless
        assert torch.autograd.gradcheck(ops.unit_mask, (x, mask, relu))


@requires_native
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for requires_grad in (False, True):
        for x, mask, relu in sample_inputs(device, requires_grad=requires_grad):
            torch.library.opcheck(torch.ops.clarena.unit_mask.default, (x, mask, relu))
    for x, mask, relu in sample_inputs(device):
        torch.library.opcheck(torch.ops.clarena.unit_mask_backward.default, (torch.randn_like(x), x, mask, relu))


def test_compiles_without_graph_breaks():
    def block(x, mask):
        return ops.unit_mask(x * 2, mask, relu=True).sum(dim=(2, 3))

    x = torch.randn(2, 4, 3, 3)
    mask = torch.rand(4, requires_grad=True)
    eager_mask = mask.detach().clone().requires_grad_()
    compiled = torch.compile(block, fullgraph=True)
    out = compiled(x, mask)
    torch.testing.assert_close(out, block(x, eager_mask))
    out.sum().backward()
    block(x, eager_mask).sum().backward()
    torch.testing.assert_close(mask.grad, eager_mask.grad)


@requires_native
def test_mask_gradient_does_not_depend_on_the_thread_count():
    x = torch.randn(64, 32, 16, 16)
    mask = torch.rand(32)
    grad = torch.randn_like(x)
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2):
            torch.set_num_threads(count)
            results.append(torch.ops.clarena.unit_mask_backward(grad, x, mask, True))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize(
    "x, mask, error, message",
    [
        (torch.randn(4, 3), torch.ones(4), ValueError, "clarena: `mask` must have the shape of the input's unit dimension (3,), got (4,)"),
        (torch.randn(4, 3), torch.ones(1, 3), ValueError, "clarena: `mask` must have the shape of the input's unit dimension (3,), got (1, 3)"),
        (torch.randn(4), torch.ones(4), ValueError, "clarena: `input` must be (N, C, ...), got shape (4,)"),
        (torch.randn(4, 3), torch.ones(3, dtype=torch.float64), TypeError, "clarena: `mask` must have the dtype of `input` (torch.float32), got torch.float64"),
        (torch.arange(12).view(4, 3), torch.ones(3), TypeError, "clarena: `input` must be a floating-point tensor, got torch.int64"),
        (torch.randn(4, 3), torch.ones(3, device="meta"), ValueError, "clarena: `mask` must be on the device of `input` (cpu), got meta"),
    ],
)
def test_bad_input_is_refused_with_the_argument_named(x, mask, error, message):
    assert_refused_on_both_paths(lambda: ops.unit_mask(x, mask), error, message)


# Shapes at the kernels' boundaries. CPU: 256-sample blocks of the (N, C) mask gradient (255 to
# 1029 samples), 8-lane rows of spatial inputs (7, 8, 9, 15, 16, 17 positions), parallel chunks
# of GRAIN_SIZE (32768) elements in both loops. CUDA: 256-thread blocks, channels sliced from 2^15
# elements up (to the cap of 64 slices), grid-stride forward loops longer than one grid.
BOUNDARY_SHAPES = [
    (255, 5), (256, 5), (257, 5), (513, 40), (1029, 130), (600, 64),
    (3, 5, 7), (3, 5, 8), (3, 5, 9), (2, 3, 15), (2, 3, 16), (2, 3, 17), (2, 4, 4, 4),
    (1, 5000, 7), (2, 300, 3, 3), (3, 2, 300), (3, 2, 11_000), (1, 3, 70_000), (5, 7, 97, 97), (1, 1, 2_100_001),
]  # fmt: skip


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", BOUNDARY_SHAPES, ids=str)
def test_kernel_boundaries_within_the_summation_error(device, dtype, shape):
    x = torch.randn(shape, device=device, dtype=dtype)
    mask = torch.rand(shape[1], device=device, dtype=dtype)
    mask[::3] = 0  # closed units
    grad = torch.randn(shape, device=device, dtype=dtype)
    for relu in (True, False):
        native, reference, native_args, reference_args = run_both(ops.unit_mask, [x.requires_grad_(), mask.requires_grad_(), relu])
        assert torch.equal(native, reference)
        native.backward(grad)
        reference.backward(grad)
        torch.testing.assert_close(native_args[0].grad, reference_args[0].grad, rtol=0, atol=0)
        error = (native_args[1].grad.double() - reference_args[1].grad.double()).abs()
        bound = 2 * unit_mask_gradient_bound(x, mask, grad, relu)  # both within the bound of the exact sum
        assert bool((error <= bound).all()), (relu, (error - bound).max().item())
