"""What t5x's own trainer needs from us beyond the module: rules for our axis names.

Only the gin files under `gin/t5x/` import this module, so it may import t5x;
`import altup_t5` never does. Two tables of t5x's must know every logical axis name
our parameters use, and t5x's defaults do not know the AltUp and MoE ones:

- Adafactor's factor rules: an unknown parameter axis name is a bare `KeyError` when
  t5x creates the train state;
- the partitioner's logical axis rules: an unknown name silently maps to "replicated",
  so a rule that should shard (`expert_group` over `data`) would be lost.

Both are built here from t5x's own tables plus ours (`partitioning.LOGICAL_AXIS_RULES`),
so a name added to our table reaches t5x without editing a gin file.
"""

from __future__ import annotations

import flax
from t5x import adafactor
from t5x import partitioning as t5x_partitioning
from t5x.contrib.moe import adafactor_utils
from t5x.contrib.moe import partitioning as t5x_moe_partitioning

from altup_t5.training import partitioning

# Mesh axes of t5x's partitioners: `PjitPartitioner` and `MoePjitPartitioner`.
DENSE_MESH_AXES = ("data", "model")
MOE_MESH_AXES = ("data", "expert", "model")

# How Adafactor factors the axes t5x's tables lack.
ALTUP_FACTOR_RULES = {
    # ROW, like `embed`: the [vocab, K, d] table and the [K, d, vocab] softmax kernel
    # then get exactly the row/column statistics of one [vocab, K*d] (or [K*d, vocab])
    # matrix, i.e. what a K*d-wide T5 would get. (NONE would make those kernels
    # COLUMN+NONE+ROW, which t5x rejects; BATCH would keep K separate statistics.)
    "altup_blocks": adafactor.FactorDim.ROW,
    # Second K of the [K, K] predict coefficients: tiny, never factored.
    "altup_blocks_in": adafactor.FactorDim.NONE,
}


def logical_factor_rules() -> flax.core.FrozenDict:
  """t5x's dense + MoE Adafactor factor rules, plus AltUp's.

  gin: `adafactor.Adafactor.logical_factor_rules = @t5x_adapters.logical_factor_rules()`.
  """
  rules = flax.core.unfreeze(adafactor_utils.logical_factor_rules())
  rules.update(ALTUP_FACTOR_RULES)
  return flax.core.freeze(rules)


def _missing_rules(mesh_axes: tuple[str, ...], t5x_rules) -> list[tuple]:
  """Our rules (restricted to `mesh_axes`) for the names t5x's `t5x_rules` lack.

  Names both tables have keep t5x's mapping: they agree except on `batch`, which
  each partitioner spreads over its own data axes.
  """
  known = {name for name, _ in t5x_rules}
  return [(name, mesh) for name, mesh in partitioning.axis_rules(mesh_axes)
          if name not in known]


def additional_axis_rules() -> list[tuple]:
  """For `PjitPartitioner` (mesh `data x model`): AltUp's axes replicated; MoE's
  token groups over `data` and experts replicated (no `expert` mesh axis).

  gin: `partitioning.standard_logical_axis_rules.additional_rules =
  @t5x_adapters.additional_axis_rules()`.
  """
  return _missing_rules(DENSE_MESH_AXES, t5x_partitioning.standard_logical_axis_rules())


def moe_additional_axis_rules() -> list[tuple]:
  """For `MoePjitPartitioner` (mesh `data x expert x model`), whose own table already
  maps `expert` and `unmodeled`: AltUp's axes and the expert-major token groups.

  gin: `moe_partitioning.standard_logical_axis_rules.additional_rules =
  @t5x_adapters.moe_additional_axis_rules()`.
  """
  return _missing_rules(MOE_MESH_AXES, t5x_moe_partitioning.standard_logical_axis_rules())
