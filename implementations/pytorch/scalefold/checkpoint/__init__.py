"""Checkpoints: the MLPerf reference layout and AlphaFold's public JAX parameters.

- `load_reference_checkpoint` / `save_reference_checkpoint`: the MLPerf initial checkpoint
  layout (``{"alphafold_state_dict": ..., ...}``), strict and bit-exact.
- `import_alphafold_params`: AlphaFold's ``params_model_*.npz`` into a model;
  `alphafold_params_to_state_dict` / `state_dict_to_alphafold_params` for both directions.
"""

from scalefold.checkpoint.alphafold_params import (
    alphafold_params_to_state_dict,
    import_alphafold_params,
    load_alphafold_npz,
    parameter_mapping,
    state_dict_to_alphafold_params,
)
from scalefold.checkpoint.reference import (
    CheckpointError,
    atomic_torch_save,
    load_reference_checkpoint,
    optimizer_state_by_name,
    read_checkpoint_file,
    reference_state_dict_shapes,
    save_reference_checkpoint,
    sha256_file,
)

__all__ = [
    "CheckpointError",
    "alphafold_params_to_state_dict",
    "atomic_torch_save",
    "import_alphafold_params",
    "load_alphafold_npz",
    "load_reference_checkpoint",
    "optimizer_state_by_name",
    "parameter_mapping",
    "read_checkpoint_file",
    "reference_state_dict_shapes",
    "save_reference_checkpoint",
    "sha256_file",
    "state_dict_to_alphafold_params",
]
