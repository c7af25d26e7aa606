"""The network: `config` (T5Config, sizes and variants, `config_for`), `layers` (T5.1.1's
attention, MLP, norms, relative position bias), `altup` (the predict/correct step),
`moe` (sparse FFNs and routing), `network` (the encoder-decoder `Transformer`, t5x's
module contract) and `flops` (the model FLOPs of a step).

May import: jax, flax and each other; nothing else of altup_t5. Gin never reaches it.
"""
