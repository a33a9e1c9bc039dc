// Conversions between troupe::error and caf::error.
//
// Inside CAF, troupe errors travel as caf::error of the "troupe" category whose
// context is the message string, so `request(...).then(ok, err)` sees them as any
// other CAF error and `system().render(err)` prints "troupe::<code>: <message>".
// CAF's own errors (sec, exit_reason) map to the closest errc, keeping CAF's text.
#pragma once

#include "troupe/actors/error.hpp"

#include <caf/error.hpp>

namespace troupe {

caf::error to_caf_error(const error& e);
error from_caf_error(const caf::error& e);

/// The category atom of troupe errors inside CAF.
caf::atom_value troupe_error_category() noexcept;

/// Renders troupe errors for caf::actor_system::render (registered by the node).
std::string render_caf_troupe_error(std::uint8_t code, caf::atom_value category,
                                    const caf::message& context);

} // namespace troupe
