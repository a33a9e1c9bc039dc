// Atoms of troupe's actor protocols that user code may send (CAF 0.17 atoms are at
// most 10 characters). Internal control messages use private struct types instead,
// so a user message can never be mistaken for one.
#pragma once

#include <caf/atom.hpp>

namespace troupe {

/// (child_atom, std::string name) -> caf::actor: the stable handle of a child.
using child_atom = caf::atom_constant<caf::atom("t_child")>;
/// (children_atom) -> std::vector<child_info>: a supervisor's children.
using children_atom = caf::atom_constant<caf::atom("t_children")>;
/// (start_atom, child_spec) -> caf::actor: add a child to a running supervisor.
using start_atom = caf::atom_constant<caf::atom("t_start")>;
/// (stop_atom) -> caf::unit: stop all children in reverse start order, then quit.
using stop_atom = caf::atom_constant<caf::atom("t_stop")>;

} // namespace troupe
