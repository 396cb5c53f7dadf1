"""The mode names of HAT's gradient adjustment, read by the ops and by the backbones.

An aggregation turns a layer's two unit measures (its output units and its input units) into a
parameter-wise measure; a rate turns that measure into the factor the gradient is scaled by
(Serra et al. 2018, "Overcoming catastrophic forgetting with hard attention to the task"; AdaHAT,
Wang et al. 2024).
"""

AGGREGATION_MODES = ("min", "max", "mean")
ADJUSTMENT_RATES = ("hat", "hat_const_alpha", "adahat")
