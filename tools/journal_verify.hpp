// `troupe journal verify`'s findings, shared by the checks every store needs
// (journal_verify.cpp) and those only one store needs (journal_source::store_checks).
#pragma once

#include "journal_source.hpp"

#include <map>

namespace troupe::tools {

class verify_report {
public:
  template <class... Ts>
  void problem(fmt::format_string<Ts...> f, Ts&&... xs) {
    problems.push_back(fmt::format(f, std::forward<Ts>(xs)...));
  }

  /// A text column other readers expect as UTF-8 (JSON, CBOR text, other languages).
  void check_text(const journal_row& r, int column, std::string_view what,
                  const std::string& row) {
    if (r.is_text(column) && !persistence::is_valid_utf8(r.text(column)))
      problem("invalid UTF-8: {} {} is not valid UTF-8: '{}'", row, what, r.shown(column));
  }

  /// The payload is CBOR, and its strings are UTF-8.
  void check_payload(byte_span payload, std::string_view kind, const std::string& row) {
    auto doc = codec_registry::cbor_to_json(payload);
    if (!doc)
      problem("undecodable {}: {}: payload is not CBOR ({})", kind, row, hex(payload, 8));
    else if (persistence::has_invalid_utf8(*doc))
      problem("invalid UTF-8: {} {}: the payload holds a string that is not valid UTF-8 "
              "(shown with \\xNN escapes by `troupe journal events`)",
              kind, row);
  }

  std::vector<std::string> problems;
  std::int64_t events = 0;
  std::int64_t snapshots = 0;
  std::map<std::string, std::int64_t> highest;  // by shown name
};

} // namespace troupe::tools
