"""Using a trained network: `decoding` (greedy, sampling and beam search with the
cache), `predictor` (the one jitted, mesh-sharded scoring and decoding step that
evaluation, inference and bench use) and `evaluation` (teacher-forced metrics, and
decoding scored with a task's seqio postprocessor and metrics).

May import: model, training, data.
"""
