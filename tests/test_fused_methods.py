"""The pieces of the fused CLArena methods that need no CLArena: capacity sums and lazy rates.

Their equality with CLArena's own methods is tested in tests/clarena_integration/.
"""

import pytest
import torch

from clarena import ops
from clarena.accelerate.fused_methods import AdjustmentRates, weight_rate_sums

FORMULAS = {  # (formula(measure, layer parameter), the layers' parameters)
    "hat": (lambda m, _: 1 - m, [None] * 4),
    "adahat": (lambda m, r: torch.div(r, m + r), [0.37, 2.0, 0.05, 1.0]),
    "nonlinear": (lambda m, p: torch.exp(-p * m) + m * m, [3.0, 0.5, 1.0, 2.0]),
}
SHAPES = [(7, 5), (6, 4, 3, 3), (1, 9), (9, 1, 2, 1)]


def unit_measures(rows, cols, kind):
    if kind == "binary":
        return torch.randint(0, 2, (rows,)).float(), torch.randint(0, 2, (cols,)).float()
    if kind == "counts":  # AdaHAT's summative mask: many ties
        return torch.randint(0, 4, (rows,)).float(), torch.randint(0, 4, (cols,)).float()
    return torch.rand(rows) * 3, torch.rand(cols) * 3


@pytest.mark.parametrize("aggregation", ["min", "max", "mean"])
@pytest.mark.parametrize("kind", ["binary", "counts", "real"])
@pytest.mark.parametrize("formula", list(FORMULAS))
@pytest.mark.parametrize("first_layers", [(), (1,), (0, 3)])
def test_rate_sums_equal_the_sums_of_the_materialised_rates(aggregation, kind, formula, first_layers):
    """Layers of different widths and kinds in one call; `first_layers` have no preceding measure."""
    f, params = FORMULAS[formula]
    a, b = zip(*(unit_measures(shape[0], shape[1], kind) for shape in SHAPES))
    b = [None if index in first_layers else b_l for index, b_l in enumerate(b)]
    weight_sums, unit_sums = weight_rate_sums(list(a), b, SHAPES, aggregation, f, params)
    for index, (a_l, b_l, shape, p) in enumerate(zip(a, b, SHAPES, params)):
        expected = f(ops.parameter_measure(a_l, b_l, shape, aggregation), p).double().sum()
        torch.testing.assert_close(weight_sums[index].double(), expected, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(unit_sums[index].double(), f(a_l, p).double().sum(), rtol=1e-5, atol=1e-5)


def test_rate_sum_of_hat_rates_counts_the_free_weights_exactly():
    a = torch.tensor([1.0, 0.0, 1.0])
    b = torch.tensor([1.0, 1.0, 0.0, 0.0])
    hat = FORMULAS["hat"][0]
    # a weight is frozen (rate 0) iff both its units are in the mask: 2 * 2 of 12, times 3x3 kernels
    weight_sums, unit_sums = weight_rate_sums([a, a], [b, None], [(3, 4, 3, 3), (3, 4, 3, 3)], "min", hat, [None, None])
    assert weight_sums.tolist() == [(12 - 4) * 9, 1 * 4 * 9]
    assert unit_sums.tolist() == [1, 1]


def test_adjustment_rates_are_built_when_read_and_once():
    built = []

    def measure():
        built.append(1)
        return torch.tensor([0.0, 1.0])

    rates = AdjustmentRates()
    rates.add("fc/0", lambda: 1 - measure())
    assert not built and list(rates) == ["fc/0"] and len(rates) == 1
    assert rates["fc/0"].tolist() == [1.0, 0.0]
    assert dict(rates.items())["fc/0"] is rates["fc/0"] and len(built) == 1
    with pytest.raises(KeyError):
        rates["fc/1"]
