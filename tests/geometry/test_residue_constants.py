"""scalefold.geometry.residue_constants against AlphaFold's own module (exact equality)."""

from __future__ import annotations

import numpy as np
import pytest

from scalefold.geometry import residue_constants as rc

af = pytest.importorskip("alphafold.common.residue_constants")
af_all_atom = pytest.importorskip("alphafold.model.all_atom")

pytestmark = pytest.mark.oracle


def _plain(x):
    """Nested mappings/sequences as dicts/tuples, for comparing lists with tuples."""
    if isinstance(x, (list, tuple)):
        return tuple(_plain(v) for v in x)
    if hasattr(x, "items"):
        return {k: _plain(v) for k, v in x.items()}
    return x


@pytest.mark.parametrize(
    "name",
    [
        "restypes",
        "restype_order",
        "restype_num",
        "unk_restype_index",
        "restypes_with_x",
        "restype_order_with_x",
        "restypes_with_x_and_gap",
        "restype_1to3",
        "restype_3to1",
        "unk_restype",
        "resnames",
        "resname_to_idx",
        "atom_types",
        "atom_order",
        "atom_type_num",
        "ca_ca",
        "restype_name_to_atom14_names",
        "chi_angles_atoms",
        "chi_angles_mask",
        "chi_pi_periodic",
        "rigid_group_atom_positions",
        "residue_atoms",
        "residue_atom_renaming_swaps",
        "van_der_waals_radius",
        "between_res_bond_length_c_n",
        "between_res_bond_length_stddev_c_n",
        "between_res_cos_angles_c_n_ca",
        "between_res_cos_angles_ca_c_n",
        "HHBLITS_AA_TO_ID",
        "ID_TO_HHBLITS_AA",
        "MAP_HHBLITS_AATYPE_TO_OUR_AATYPE",
        "chi_groups_for_atom",
        "PROTEIN_CHAIN",
        "POLYMER_CHAIN",
    ],
)
def test_tables_equal_alphafold(name):
    assert _plain(getattr(rc, name)) == _plain(getattr(af, name))


@pytest.mark.parametrize(
    "name",
    [
        "STANDARD_ATOM_MASK",
        "chi_atom_1_one_hot",
        "chi_atom_2_one_hot",
        "chi_angles_atom_indices",
        "restype_atom37_to_rigid_group",
        "restype_atom37_mask",
        "restype_atom37_rigid_group_positions",
        "restype_atom14_to_rigid_group",
        "restype_atom14_mask",
        "restype_atom14_rigid_group_positions",
        "restype_rigid_group_default_frame",
    ],
)
def test_derived_arrays_equal_alphafold(name):
    ours, theirs = getattr(rc, name), np.asarray(getattr(af, name))
    assert ours.shape == theirs.shape
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)
    assert not ours.flags.writeable


def test_arrays_from_alphafold_model_code():
    np.testing.assert_array_equal(
        rc.chi_atom_indices, np.asarray(af_all_atom.get_chi_atom_indices())
    )
    np.testing.assert_array_equal(
        rc.restype_atom14_renaming_matrices, af_all_atom.RENAMING_MATRICES
    )
    np.testing.assert_array_equal(
        rc.restype_chi_angles_mask, np.asarray(list(af.chi_angles_mask) + [[0.0] * 4], np.float32)
    )
    # The atom37 existence mask used by make_atom14_masks equals the geometry table's.
    np.testing.assert_array_equal(rc.STANDARD_ATOM_MASK, rc.restype_atom37_mask)


def test_atom14_index_maps_follow_atom_names():
    for r, res in enumerate(rc.resnames):
        for i, name in enumerate(rc.restype_name_to_atom14_names[res]):
            if name:
                assert rc.restype_atom14_to_atom37[r, i] == rc.atom_order[name]
                assert rc.restype_atom37_to_atom14[r, rc.atom_order[name]] == i
            else:
                assert rc.restype_atom14_to_atom37[r, i] == 0
    # Swap indices are involutions and agree with the renaming matrices.
    swap = rc.restype_atom14_ambiguous_atoms_swap_idx
    np.testing.assert_array_equal(
        np.take_along_axis(swap, swap, axis=1), np.tile(np.arange(14), (21, 1))
    )
    np.testing.assert_array_equal(rc.restype_atom14_renaming_matrices.argmax(-1), swap)
    np.testing.assert_array_equal(
        rc.restype_atom14_ambiguous_atoms, (swap != np.arange(14)).astype(np.float32)
    )


def test_rigidgroup_tables():
    # Ambiguous groups: the last chi of ASP, GLU, PHE, TYR.
    expected = {("ASP", 5), ("GLU", 6), ("PHE", 5), ("TYR", 5)}
    got = {(rc.resnames[r], g) for r, g in zip(*np.nonzero(rc.restype_rigidgroup_is_ambiguous))}
    assert got == expected
    for r, g in zip(*np.nonzero(rc.restype_rigidgroup_is_ambiguous)):
        np.testing.assert_array_equal(
            rc.restype_rigidgroup_ambiguity_rot[r, g], np.diag([1.0, -1.0, -1.0])
        )
    np.testing.assert_array_equal(
        rc.restype_rigidgroup_mask[:20, 4:], np.asarray(af.chi_angles_mask)
    )
    assert rc.restype_rigidgroup_mask[20].tolist() == [1, 0, 0, 1, 0, 0, 0, 0]


def test_stereo_chemical_props_equal_alphafold():
    for ours, theirs in zip(rc.load_stereo_chemical_props(), af.load_stereo_chemical_props()):
        assert {k: [tuple(b) for b in v] for k, v in ours.items()} == {
            k: [tuple(b) for b in v] for k, v in theirs.items()
        }


@pytest.mark.parametrize(
    "kwargs", [{}, {"overlap_tolerance": 1.0, "bond_length_tolerance_factor": 12}]
)
def test_dists_bounds_equal_alphafold(kwargs):
    ours, theirs = rc.make_atom14_dists_bounds(**kwargs), af.make_atom14_dists_bounds(**kwargs)
    assert set(ours) == set(theirs)
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key])


def test_sequence_to_onehot():
    seq = "MKVLAXGW"
    np.testing.assert_array_equal(
        rc.sequence_to_onehot(seq, rc.restype_order_with_x),
        af.sequence_to_onehot(seq, af.restype_order_with_x),
    )
    np.testing.assert_array_equal(
        rc.sequence_to_onehot("MKBZU", rc.restype_order_with_x, map_unknown_to_x=True),
        af.sequence_to_onehot("MKBZU", af.restype_order_with_x, map_unknown_to_x=True),
    )
    np.testing.assert_array_equal(
        rc.sequence_to_onehot("AB-", rc.HHBLITS_AA_TO_ID),
        af.sequence_to_onehot("AB-", af.HHBLITS_AA_TO_ID),
    )
    with pytest.raises(ValueError):
        rc.sequence_to_onehot("ak", rc.restype_order_with_x, map_unknown_to_x=True)
    with pytest.raises(KeyError):
        rc.sequence_to_onehot("AB", rc.restype_order)
    assert rc.sequence_to_onehot("", rc.restype_order).shape == (0, 20)


def test_constants_are_immutable():
    with pytest.raises(TypeError):
        rc.atom_order["XX"] = 0  # type: ignore[index]
    with pytest.raises(TypeError):
        rc.rigid_group_atom_positions["ALA"] = ()  # type: ignore[index]
    with pytest.raises(ValueError):
        rc.restype_rigid_group_default_frame[0, 0, 0, 0] = 2.0
    with pytest.raises(ValueError):
        rc.make_atom14_dists_bounds()["lower_bound"][0, 0, 0] = 1.0
    assert isinstance(rc.chi_angles_atoms["ARG"], tuple)
