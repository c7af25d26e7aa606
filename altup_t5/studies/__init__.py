"""Studies (`python -m altup_t5.compare`): `study` (the TOML study files), `runner`
(one training process per run, resumable), `results` (reading runs back), `report` (the
paper's tables, speedups) and `plots`.

May import: model (configs), training (summaries), data, and `altup_t5.cli` to check
each run's gin configuration before any starts; runs train through the
`altup_t5.train` command, never in-process.
"""
