// The codec's CBOR (nlohmann::json::from_cbor / to_cbor; strict, tags refused),
// fast: the transport's hot path, and codec_registry's encode and decode (every
// persisted event and every replayed one).
//
// nlohmann's CBOR reader spends ~1.4 us on a 120-byte message (it reads byte by
// byte through an input adapter and grows strings a byte at a time); read_cbor
// builds the same nlohmann::json document in a fraction of that, and write_cbor
// writes the same bytes as to_cbor without its per-byte output adapter. The
// differential fuzz target (tests/remote/fuzz, mode bit 2) holds them to that:
// whatever one accepts the other accepts, with the same document and bytes.
//
// Two differences, both for input no encoder produces: documents nested deeper
// than max_cbor_depth are rejected (nlohmann's recursive reader would overflow the
// stack: a 4 MiB frame of 0x81 bytes is four million levels), and negative
// integers below INT64_MIN are rejected (nlohmann wraps them around).
// Thread-safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace troupe::remote::detail {

inline constexpr int max_cbor_depth = 256;

/// Parses one CBOR document that must span all of `payload` into `out`. If `out`
/// holds a document from an earlier call, its strings and containers are reused
/// (no allocations when messages have the same shape), with the same result as
/// a fresh parse. False, with `why`, if the payload is malformed, tagged, nested
/// too deeply or has trailing bytes (`out` then holds garbage).
bool read_cbor(std::span<const std::uint8_t> payload, nlohmann::json& out, std::string& why);

/// Appends exactly what nlohmann::json::to_cbor(doc) writes.
void write_cbor(const nlohmann::json& doc, std::vector<std::uint8_t>& out);

} // namespace troupe::remote::detail
