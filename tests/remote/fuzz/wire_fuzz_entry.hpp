// The fuzz entry point for the transport's frame and handshake decoders. Used by
// the libFuzzer target (wire_fuzz.cpp, `make fuzz`, clang) and by the corpus replay
// test (fuzz_corpus_test.cpp, part of ctest with the normal compiler).
//
// Input: byte 0 picks the setting (bit 0: a shared secret is configured; bit 1:
// play the initiator instead of the acceptor; bit 2: the rest is one CBOR payload
// for the differential check of remote/cbor.hpp against nlohmann); the rest is a
// byte stream as a peer would send it. The stream is split into frames exactly as the engine does; each
// frame goes through the handshake state machine while it is not established and
// through the application decoders after, and every decoder is also applied to
// every frame. Whatever decodes is re-encoded and must decode to the same values.
// Any crash, sanitizer report or abort() is a finding.
#pragma once

#include "troupe/actors/remote/cbor.hpp"
#include "troupe/actors/remote/handshake.hpp"
#include "troupe/actors/remote/wire.hpp"

#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>

namespace troupe::test {

namespace fuzz_detail {

inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "wire fuzz: round trip mismatch: %s\n", what);
    std::abort();
  }
}

template <class View>
void append_elements(remote::wire::bytes& out, const View& v) {
  for (std::size_t i = 0; i < v.count; ++i) {
    auto at = remote::wire::begin_element(out, v.elements[i].manifest, v.elements[i].version);
    out.insert(out.end(), v.elements[i].payload.begin(), v.elements[i].payload.end());
    remote::wire::end_element(out, at);
  }
}

inline void same_element(const remote::wire::element_view& a,
                         const remote::wire::element_view& b) {
  require(a.manifest == b.manifest, "manifest");
  require(a.version == b.version, "version");
  require(a.payload.size() == b.payload.size()
            && std::memcmp(a.payload.data(), b.payload.data(), a.payload.size()) == 0,
          "payload");
}

template <class View>
void same_elements(const View& a, const View& b) {
  require(a.count == b.count, "element count");
  for (std::size_t i = 0; i < a.count; ++i)
    same_element(a.elements[i], b.elements[i]);
}

inline remote::wire::frame_view reparse(const remote::wire::bytes& buf) {
  remote::wire::frame_view f{};
  std::size_t consumed = 0;
  error err;
  auto st = remote::wire::scan_frame(buf, UINT32_MAX, f, consumed, err);
  require(st == remote::wire::scan_status::frame && consumed == buf.size(), "reframe");
  return f;
}

inline void round_trip_message(remote::wire::frame_view f) {
  using namespace remote::wire;
  message_view m;
  if (!decode_message(f, m))
    return;
  bytes out;
  auto at = begin_message(out, m.correlation, m.target, static_cast<std::uint8_t>(m.count),
                          m.incarnation);
  append_elements(out, m);
  end_frame(out, at);
  message_view again;
  require(decode_message(reparse(out), again).has_value(), "re-decode message");
  require(again.correlation == m.correlation && again.target == m.target
            && again.incarnation == m.incarnation,
          "message head");
  same_elements(m, again);
}

inline void round_trip_packet(remote::wire::frame_view f) {
  using namespace remote::wire;
  packet_view p;
  if (!decode_packet(f, p))
    return;
  bytes out;
  put_packet(out, p.incarnation, p.channel, p.element.manifest, p.element.version,
             p.element.payload);
  packet_view again;
  require(decode_packet(reparse(out), again).has_value(), "re-decode packet");
  require(again.incarnation == p.incarnation && again.channel == p.channel, "packet head");
  same_element(p.element, again.element);
}

inline void round_trip_response(remote::wire::frame_view f) {
  using namespace remote::wire;
  response_view r;
  if (!decode_response(f, r))
    return;
  bytes out;
  if (r.is_error) {
    put_error_response(out, r.correlation, r.error_code, r.error_text);
  } else {
    auto at = begin_response(out, r.correlation, static_cast<std::uint8_t>(r.count));
    append_elements(out, r);
    end_frame(out, at);
  }
  response_view again;
  require(decode_response(reparse(out), again).has_value(), "re-decode response");
  require(again.correlation == r.correlation && again.is_error == r.is_error, "response head");
  require(again.error_code == r.error_code && again.error_text == r.error_text, "response error");
  same_elements(r, again);
}

inline void round_trip_control(remote::wire::frame_view f) {
  using namespace remote::wire;
  if (auto h = decode_hello(f)) {
    bytes out;
    put_hello(out, f.type, *h);
    auto again = decode_hello(reparse(out));
    require(again.has_value(), "re-decode hello");
    require(again->incarnation == h->incarnation && again->host == h->host
              && again->cluster == h->cluster && again->nonce == h->nonce && again->mac == h->mac
              && again->port == h->port && again->max_frame == h->max_frame,
            "hello fields");
  }
  if (auto a = decode_auth(f)) {
    bytes out;
    put_auth(out, *a);
    auto again = decode_auth(reparse(out));
    require(again.has_value() && *again == *a, "auth");
  }
  if (auto r = decode_refuse(f)) {
    bytes out;
    put_refuse(out, r->code, r->reason);
    auto again = decode_refuse(reparse(out));
    require(again.has_value() && again->code == r->code && again->reason == r->reason, "refuse");
  }
  if (auto g = decode_goodbye(f)) {
    bytes out;
    put_goodbye(out, g->node_stopping, g->reason);
    auto again = decode_goodbye(reparse(out));
    require(again.has_value() && again->node_stopping == g->node_stopping
              && again->reason == g->reason,
            "goodbye");
  }
}

/// Same type and value all the way down (NaNs compare by bits, unlike operator==).
inline bool same_document(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.type() != b.type())
    return false;
  switch (a.type()) {
    case nlohmann::json::value_t::number_float: {
      auto x = a.get<double>();
      auto y = b.get<double>();
      return std::memcmp(&x, &y, sizeof(x)) == 0 || (std::isnan(x) && std::isnan(y));
    }
    case nlohmann::json::value_t::array:
      if (a.size() != b.size())
        return false;
      for (std::size_t i = 0; i < a.size(); ++i)
        if (!same_document(a[i], b[i]))
          return false;
      return true;
    case nlohmann::json::value_t::object: {
      if (a.size() != b.size())
        return false;
      for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j)
        if (i.key() != j.key() || !same_document(*i, *j))
          return false;
      return true;
    }
    default:
      return a == b;
  }
}

/// remote::detail::read_cbor / write_cbor against nlohmann's from_cbor / to_cbor.
inline void differential_cbor(remote::wire::byte_span in) {
  nlohmann::json fast;
  std::string why;
  bool fast_ok = remote::detail::read_cbor(in, fast, why);
  if (!fast_ok && why.find("nested too deeply") != std::string::npos)
    return;  // nlohmann would recurse until the stack overflows
  nlohmann::json slow;
  try {
    // Throws even with allow_exceptions = false (e.g. "excessive object size").
    slow = nlohmann::json::from_cbor(in.begin(), in.end(), true, false,
                                     nlohmann::json::cbor_tag_handler_t::error);
  } catch (const std::exception&) {
    slow = nlohmann::json(nlohmann::json::value_t::discarded);
  }
  if (!fast_ok && why.find("below INT64_MIN") != std::string::npos)
    return;  // nlohmann wraps these around; rejecting them is deliberate
  require(fast_ok == !slow.is_discarded(), "read_cbor and from_cbor disagree on validity");
  if (!fast_ok)
    return;
  require(same_document(fast, slow), "read_cbor and from_cbor built different documents");
  // Parsing into a document left by earlier messages must give the same result:
  // once over an unrelated document, once over this very one (the steady state).
  auto reused = nlohmann::json::parse(R"({"payload":"zz","a":[1,2,{"b":null}],"n":-1})");
  reused["bin"] = nlohmann::json::binary({1, 2}, 7);
  for (int round = 0; round < 2; ++round) {
    std::string ignored;
    require(remote::detail::read_cbor(in, reused, ignored), "read_cbor into a used document");
    require(same_document(reused, slow), "read_cbor into a used document built another one");
  }
  remote::wire::bytes mine;
  remote::wire::bytes theirs;
  remote::detail::write_cbor(slow, mine);
  nlohmann::json::to_cbor(slow, theirs);
  require(mine == theirs, "write_cbor and to_cbor wrote different bytes");
}

} // namespace fuzz_detail

/// The entry point; always returns 0 (libFuzzer's convention).
inline int fuzz_wire_one_input(const std::uint8_t* data, std::size_t size) {
  using namespace remote;
  if (size == 0)
    return 0;
  auto mode = data[0];
  wire::byte_span in{data + 1, size - 1};
  if (mode & 4) {
    fuzz_detail::differential_cbor(in);
    return 0;
  }
  handshake_settings settings{node_identity{node_address{"127.0.0.1", 7000}, 0x1111},
                              "fuzz", (mode & 1) ? "secret" : "", 64 * 1024};
  handshake hs{(mode & 2) ? handshake::role::initiator : handshake::role::acceptor, settings, {}};
  wire::bytes out;
  if (mode & 2)
    hs.start(out);
  std::size_t pos = 0;
  while (pos < in.size()) {
    wire::frame_view f{};
    std::size_t consumed = 0;
    error err;
    bool established = hs.current() == handshake::state::established;
    auto limit = established ? settings.max_frame : wire::max_handshake_frame;
    if (wire::scan_frame(in.subspan(pos), limit, f, consumed, err) != wire::scan_status::frame)
      break;
    pos += consumed;
    fuzz_detail::round_trip_message(f);
    fuzz_detail::round_trip_packet(f);
    fuzz_detail::round_trip_response(f);
    fuzz_detail::round_trip_control(f);
    if (!established) {
      out.clear();
      if (hs.on_frame(f, out) == handshake::state::failed)
        fuzz_detail::require(!hs.failure().message().empty(), "failure without a reason");
    }
  }
  return 0;
}

} // namespace troupe::test
