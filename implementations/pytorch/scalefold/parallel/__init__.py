"""Dynamic axial parallelism (DAP): one sample's Evoformer across a process group.

`parallelize_dap(model, group)` shards the Evoformer, extra-MSA and template pair stacks
of a plain `AlphaFold` in place; see docs/DAP.md.
"""

from scalefold.parallel.comm import (
    all_gather,
    all_to_all,
    col_to_row,
    gather,
    reduce_scatter,
    row_to_col,
    scatter,
)
from scalefold.parallel.dap import (
    new_dap_groups,
    parallelize_dap,
    sharded_parameters,
    sync_dap_gradients,
)
from scalefold.parallel.layers import DAPContext

__all__ = [
    "DAPContext",
    "all_gather",
    "all_to_all",
    "col_to_row",
    "gather",
    "new_dap_groups",
    "parallelize_dap",
    "reduce_scatter",
    "row_to_col",
    "scatter",
    "sharded_parameters",
    "sync_dap_gradients",
]
