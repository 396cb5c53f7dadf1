"""The pieces of the fused CLArena methods that need no CLArena: capacity sums and lazy rates.

Their equality with CLArena's own methods is tested in tests/clarena_integration/.
"""

import pytest
import torch

from clarena import ops
from clarena.fused_clarena_methods import AdjustmentRates, rate_sum

FORMULAS = {
    "hat": lambda m: 1 - m,
    "adahat": lambda m: torch.div(torch.tensor(0.37), m + torch.tensor(0.37)),
    "nonlinear": lambda m: torch.exp(-3 * m) + m * m,
}


def unit_measures(rows, cols, kind):
    if kind == "binary":
        return torch.randint(0, 2, (rows,)).float(), torch.randint(0, 2, (cols,)).float()
    if kind == "counts":  # AdaHAT's summative mask: many ties
        return torch.randint(0, 4, (rows,)).float(), torch.randint(0, 4, (cols,)).float()
    return torch.rand(rows) * 3, torch.rand(cols) * 3


@pytest.mark.parametrize("shape", [(7, 5), (6, 4, 3, 3), (1, 9), (9, 1, 2, 1)])
@pytest.mark.parametrize("aggregation", ["min", "max", "mean"])
@pytest.mark.parametrize("kind", ["binary", "counts", "real"])
@pytest.mark.parametrize("formula", list(FORMULAS))
def test_rate_sum_equals_the_sum_of_the_materialised_rates(shape, aggregation, kind, formula):
    a, b = unit_measures(shape[0], shape[1], kind)
    f = FORMULAS[formula]
    for preceding in (b, None):
        expected = f(ops.parameter_measure(a, preceding, shape, aggregation)).double().sum()
        torch.testing.assert_close(rate_sum(a, preceding, shape, aggregation, f).double(), expected, rtol=1e-5, atol=1e-4)


def test_rate_sum_of_hat_rates_counts_the_free_weights_exactly():
    a = torch.tensor([1.0, 0.0, 1.0])
    b = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # a weight is frozen (rate 0) iff both its units are in the mask: 2 * 2 of 12, times 3x3 kernels
    assert rate_sum(a, b, (3, 4, 3, 3), "min", FORMULAS["hat"]).item() == (12 - 4) * 9
    assert rate_sum(a, None, (3, 4, 3, 3), "min", FORMULAS["hat"]).item() == 1 * 4 * 9


def test_adjustment_rates_are_built_when_read_and_once():
    built = []

    def measure():
        built.append(1)
        return torch.tensor([0.0, 1.0])

    rates = AdjustmentRates()
    rates.add("fc/0", measure, FORMULAS["hat"])
    assert not built and list(rates) == ["fc/0"] and len(rates) == 1
    assert rates["fc/0"].tolist() == [1.0, 0.0]
    assert dict(rates.items())["fc/0"] is rates["fc/0"] and len(built) == 1
    with pytest.raises(KeyError):
        rates["fc/1"]
