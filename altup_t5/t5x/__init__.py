"""Interoperation with t5x: `adapters` (factor and partition rules for t5x's trainer) and
`checkpoints` (reading t5x checkpoints, exporting ours to t5x's layout). The only
place that imports t5x (and only where t5x is installed).

May import: model, training.
"""
