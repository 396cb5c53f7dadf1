"""The per-step pieces of the HAT and WSN algorithms that drive the masked backbones.

Shared by the demo and the Mammoth models; the masking itself lives in the backbones and
`clarena.ops`.
"""
