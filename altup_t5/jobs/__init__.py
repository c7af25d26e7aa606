"""The gin-configured jobs behind the commands: `train` (the training loop: mesh, input,
state, steps, checkpoints, evaluations), `evaluate` and `infer`. The entry modules
`altup_t5.train`, `.eval` and `.infer` run them through `altup_t5.cli`.

May import: model, training, inference, data, t5x (checkpoint formats, in `load`).
"""
