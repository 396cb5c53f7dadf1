import pytest
import torch

from clarena import ops


@pytest.mark.parametrize("shape", [(256, 784), (13,), (3, 5, 3, 3), (0,), (1,), (8,)])
def test_round_trip(shape):
    mask = torch.randint(0, 2, shape).float()
    packed = ops.pack_mask(mask)
    assert packed.dtype == torch.uint8 and packed.shape == ((mask.numel() + 7) // 8,)
    assert torch.equal(ops.unpack_mask(packed, shape), mask)
    assert ops.unpack_mask(packed, shape, dtype=torch.float64).dtype == torch.float64


def test_bit_order_is_least_significant_first():
    mask = torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 1, 0, 1])
    assert ops.pack_mask(mask).tolist() == [1 + 128, 2]


def test_nonzero_means_kept():
    mask = torch.tensor([0.5, -1.0, 0.0, 2.0])
    assert ops.unpack_mask(ops.pack_mask(mask), (4,)).tolist() == [1.0, 1.0, 0.0, 1.0]


def test_a_packed_mask_takes_32_times_less_memory_than_a_float_mask():
    mask = torch.randint(0, 2, (256, 784)).float()
    packed = ops.pack_mask(mask)
    assert mask.numel() * mask.element_size() == 32 * packed.numel() * packed.element_size()


def test_bad_input_is_refused():
    with pytest.raises(TypeError, match="`packed` must be a 1-D uint8 tensor"):
        ops.unpack_mask(torch.zeros(4), (4,))
    with pytest.raises(ValueError, match="needs 2"):
        ops.unpack_mask(torch.zeros(1, dtype=torch.uint8), (3, 5))
    with pytest.raises(TypeError, match="`mask` must be a torch.Tensor"):
        ops.pack_mask([1, 0, 1])
