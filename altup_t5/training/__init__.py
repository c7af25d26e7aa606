"""Training a network: `seq2seq` (T5's losses and metrics around a `Transformer`),
`optimizer` (Adafactor and T5's schedules), `partitioning` (the one logical-axis table,
the mesh, shardings), `trainer` (sharded state and the jitted train step),
`input_pipeline` (seqio batches laid out on the mesh), `checkpoints` (orbax, with the
input position) and `summaries` (TensorBoard, JSON lines, progress).

May import: model, data. The input pipeline lives here rather than in data/ because it
lays batches out on the device mesh (partitioning); data/ stays free of jax's mesh.
"""
