// Rendering stored values as JSON text without ever throwing.
//
// nlohmann's dump() throws (type_error 316) on a string that is not valid UTF-8,
// and a C++ std::string may hold any bytes: an entity can persist, and recover,
// a command string ending in ff fe. The journal tools, replay_main and error
// messages render such strings faithfully instead: every byte that is not part of
// valid UTF-8 is written as the four characters \xNN (and `troupe journal verify`
// reports the string, since other JSON and CBOR consumers would refuse it).
//
// Thread-safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace troupe::persistence {

/// Whether `text` is valid UTF-8 (RFC 3629: shortest forms only, no surrogates,
/// nothing above U+10FFFF).
bool is_valid_utf8(std::string_view text) noexcept;

/// `text` with each byte that is not part of valid UTF-8 written as "\xNN"
/// (lowercase hex); valid text comes back unchanged.
std::string escape_invalid_utf8(std::string_view text);

namespace detail {

template <class Json>
bool has_invalid_utf8(const Json& j) {
  if (j.is_string())
    return !is_valid_utf8(j.template get_ref<const std::string&>());
  if (j.is_object()) {
    for (auto& [k, v] : j.items())
      if (!is_valid_utf8(k) || has_invalid_utf8(v))
        return true;
    return false;
  }
  if (j.is_array())
    for (auto& v : j)
      if (has_invalid_utf8(v))
        return true;
  return false;
}

template <class Json>
Json escaped_copy(const Json& j) {
  if (j.is_string())
    return escape_invalid_utf8(j.template get_ref<const std::string&>());
  if (j.is_object()) {
    Json out = Json::object();
    for (auto& [k, v] : j.items())
      out[escape_invalid_utf8(k)] = escaped_copy(v);
    return out;
  }
  if (j.is_array()) {
    Json out = Json::array();
    for (auto& v : j)
      out.push_back(escaped_copy(v));
    return out;
  }
  return j;
}

} // namespace detail

/// Whether any string or object key inside `j` is not valid UTF-8.
template <class Json>
bool has_invalid_utf8(const Json& j) {
  return detail::has_invalid_utf8(j);
}

/// j.dump(indent) that never throws: strings and keys that are not valid UTF-8 are
/// rendered with escape_invalid_utf8.
template <class Json>
std::string dump_json(const Json& j, int indent = -1) {
  if (!detail::has_invalid_utf8(j))
    return j.dump(indent);
  return detail::escaped_copy(j).dump(indent);
}

} // namespace troupe::persistence
