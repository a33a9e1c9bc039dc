#include "troupe/actors/remote/wire.hpp"

#include <fmt/core.h>

#include <cstring>

namespace troupe::remote::wire {

std::string_view to_string(frame_type t) noexcept {
  switch (t) {
    case frame_type::hello: return "hello";
    case frame_type::welcome: return "welcome";
    case frame_type::auth: return "auth";
    case frame_type::refuse: return "refuse";
    case frame_type::message: return "message";
    case frame_type::request: return "request";
    case frame_type::response: return "response";
    case frame_type::message_to: return "message_to";
    case frame_type::request_to: return "request_to";
    case frame_type::packet: return "packet";
    case frame_type::heartbeat: return "heartbeat";
    case frame_type::goodbye: return "goodbye";
  }
  return "unknown";
}

namespace {

std::uint32_t load_u32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8)
         | std::uint32_t{p[3]};
}

void store_u32(std::uint8_t* p, std::uint32_t x) {
  p[0] = static_cast<std::uint8_t>(x >> 24);
  p[1] = static_cast<std::uint8_t>(x >> 16);
  p[2] = static_cast<std::uint8_t>(x >> 8);
  p[3] = static_cast<std::uint8_t>(x);
}

error malformed(frame_type t, std::string_view why) {
  return error{errc::protocol_error, fmt::format("malformed {} frame: {}", to_string(t), why)};
}

} // namespace

scan_status scan_frame(byte_span data, std::uint32_t max_frame, frame_view& out,
                       std::size_t& consumed, error& err) {
  consumed = 0;
  if (data.size() < length_size)
    return scan_status::need_more;
  auto len = load_u32(data.data());
  if (len == 0) {
    err = error{errc::protocol_error, "frame with length 0"};
    return scan_status::error;
  }
  if (len > max_frame) {
    err = error{errc::oversize,
                fmt::format("frame of {} bytes exceeds the maximum of {} bytes", len, max_frame)};
    return scan_status::error;
  }
  auto total = length_size + std::size_t{len};
  if (data.size() < total) {
    consumed = total;
    return scan_status::need_more;
  }
  out.type = static_cast<frame_type>(data[length_size]);
  out.body = data.subspan(header_size, len - 1);
  consumed = total;
  return scan_status::frame;
}

// -- building -------------------------------------------------------------------------

std::size_t begin_frame(bytes& out, frame_type type) {
  auto offset = out.size();
  out.resize(offset + header_size);
  out[offset + length_size] = static_cast<std::uint8_t>(type);
  return offset;
}

std::size_t end_frame(bytes& out, std::size_t offset) {
  auto total = out.size() - offset;
  store_u32(out.data() + offset, static_cast<std::uint32_t>(total - length_size));
  return total;
}

void put_u8(bytes& out, std::uint8_t x) {
  out.push_back(x);
}

void put_u16(bytes& out, std::uint16_t x) {
  out.push_back(static_cast<std::uint8_t>(x >> 8));
  out.push_back(static_cast<std::uint8_t>(x));
}

void put_u32(bytes& out, std::uint32_t x) {
  auto n = out.size();
  out.resize(n + 4);
  store_u32(out.data() + n, x);
}

void put_u64(bytes& out, std::uint64_t x) {
  put_u32(out, static_cast<std::uint32_t>(x >> 32));
  put_u32(out, static_cast<std::uint32_t>(x));
}

void put_varint(bytes& out, std::uint64_t x) {
  while (x >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(x | 0x80));
    x >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(x));
}

void put_string(bytes& out, std::string_view x) {
  put_varint(out, x.size());
  out.insert(out.end(), x.begin(), x.end());
}

// -- reader ---------------------------------------------------------------------------

bool reader::fail(std::string why) {
  if (!failed_) {
    failed_ = true;
    what_ = std::move(why);
  }
  return false;
}

bool reader::raw(std::size_t n, byte_span& x) {
  if (failed_)
    return false;
  if (remaining() < n)
    return fail(fmt::format("truncated: needs {} more bytes at offset {}, has {}", n, pos_,
                            remaining()));
  x = in_.subspan(pos_, n);
  pos_ += n;
  return true;
}

bool reader::u8(std::uint8_t& x) {
  byte_span b;
  if (!raw(1, b))
    return false;
  x = b[0];
  return true;
}

bool reader::u16(std::uint16_t& x) {
  byte_span b;
  if (!raw(2, b))
    return false;
  x = static_cast<std::uint16_t>((b[0] << 8) | b[1]);
  return true;
}

bool reader::u32(std::uint32_t& x) {
  byte_span b;
  if (!raw(4, b))
    return false;
  x = load_u32(b.data());
  return true;
}

bool reader::u64(std::uint64_t& x) {
  std::uint32_t hi = 0;
  std::uint32_t lo = 0;
  if (!u32(hi) || !u32(lo))
    return false;
  x = (std::uint64_t{hi} << 32) | lo;
  return true;
}

bool reader::varint(std::uint64_t& x) {
  if (failed_)
    return false;
  x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (remaining() == 0)
      return fail(fmt::format("truncated varint at offset {}", pos_));
    auto b = in_[pos_++];
    auto bits = std::uint64_t{b & 0x7fu};
    if (shift == 63 && bits > 1)
      return fail("varint overflows 64 bits");
    x |= bits << shift;
    if ((b & 0x80) == 0)
      return true;
  }
  return fail("varint longer than 10 bytes");
}

bool reader::byte_string(byte_span& x) {
  std::uint64_t n = 0;
  if (!varint(n))
    return false;
  if (n > remaining())
    return fail(fmt::format("string of {} bytes at offset {} exceeds the {} bytes left", n, pos_,
                            remaining()));
  return raw(static_cast<std::size_t>(n), x);
}

bool reader::string(std::string_view& x) {
  byte_span b;
  if (!byte_string(b))
    return false;
  x = std::string_view{reinterpret_cast<const char*>(b.data()), b.size()};
  return true;
}

bool reader::at_end() {
  if (failed_)
    return false;
  if (remaining() != 0)
    return fail(fmt::format("{} unexpected trailing bytes", remaining()));
  return true;
}

// -- application frames -----------------------------------------------------------------

namespace {

/// Reads the element list; returns "" or what was wrong.
template <class View>
std::string read_elements(reader& r, View& out) {
  std::uint8_t count = 0;
  out.count = 0;
  if (!r.u8(count))
    return r.what();
  if (count > max_elements)
    return fmt::format("{} values, more than the {} allowed", count, max_elements);
  for (std::size_t i = 0; i < count; ++i) {
    auto& e = out.elements[i];
    std::uint64_t version = 0;
    std::uint32_t len = 0;
    if (!r.string(e.manifest) || !r.varint(version) || !r.u32(len) || !r.raw(len, e.payload))
      return r.what();
    if (e.manifest.empty())
      return fmt::format("value {} has an empty manifest", i);
    if (version == 0 || version > UINT32_MAX)
      return fmt::format("value {} has version {} outside 1..2^32-1", i, version);
    e.version = static_cast<std::uint32_t>(version);
  }
  out.count = count;
  if (!r.at_end())
    return r.what();
  return {};
}

} // namespace

expected<void> decode_message(frame_view f, message_view& out) {
  reader r{f.body};
  out.correlation = 0;
  out.incarnation = 0;
  if (!is_message(f.type))
    return malformed(f.type, "not a message or request");
  if (f.type == frame_type::message_to || f.type == frame_type::request_to) {
    if (!r.u64(out.incarnation))
      return malformed(f.type, r.what());
    if (out.incarnation == 0)
      return malformed(f.type, "incarnation 0");
  }
  if (f.type == frame_type::request || f.type == frame_type::request_to) {
    if (!r.varint(out.correlation))
      return malformed(f.type, r.what());
    if (out.correlation == 0 || out.correlation > max_correlation)
      return malformed(f.type, fmt::format("correlation id {} outside 1..2^60-1", out.correlation));
  }
  if (!r.string(out.target))
    return malformed(f.type, r.what());
  if (out.target.empty())
    return malformed(f.type, "empty target name");
  if (auto why = read_elements(r, out); !why.empty())
    return malformed(f.type, why);
  return {};
}

expected<void> decode_response(frame_view f, response_view& out) {
  reader r{f.body};
  std::uint8_t status = 0;
  if (f.type != frame_type::response)
    return malformed(f.type, "not a response");
  if (!r.varint(out.correlation) || !r.u8(status))
    return malformed(f.type, r.what());
  if (out.correlation == 0 || out.correlation > max_correlation)
    return malformed(f.type, fmt::format("correlation id {} outside 1..2^60-1", out.correlation));
  out.count = 0;
  if (status == 0) {
    out.is_error = false;
    if (auto why = read_elements(r, out); !why.empty())
      return malformed(f.type, why);
    return {};
  }
  if (status != 1)
    return malformed(f.type, fmt::format("unknown status {}", status));
  out.is_error = true;
  if (!r.u8(out.error_code) || !r.string(out.error_text) || !r.at_end())
    return malformed(f.type, r.what());
  return {};
}

std::size_t begin_message(bytes& out, std::uint64_t correlation, std::string_view target,
                          std::uint8_t count, std::uint64_t incarnation) {
  std::size_t offset = 0;
  if (incarnation == 0) {
    offset = begin_frame(out, correlation == 0 ? frame_type::message : frame_type::request);
  } else {
    offset = begin_frame(out, correlation == 0 ? frame_type::message_to : frame_type::request_to);
    put_u64(out, incarnation);
  }
  if (correlation != 0)
    put_varint(out, correlation);
  put_string(out, target);
  put_u8(out, count);
  return offset;
}

std::size_t begin_response(bytes& out, std::uint64_t correlation, std::uint8_t count) {
  auto offset = begin_frame(out, frame_type::response);
  put_varint(out, correlation);
  put_u8(out, 0);
  put_u8(out, count);
  return offset;
}

void put_error_response(bytes& out, std::uint64_t correlation, std::uint8_t code,
                        std::string_view text) {
  auto offset = begin_frame(out, frame_type::response);
  put_varint(out, correlation);
  put_u8(out, 1);
  put_u8(out, code);
  put_string(out, text);
  end_frame(out, offset);
}

std::size_t begin_element(bytes& out, std::string_view manifest, std::uint32_t version) {
  put_string(out, manifest);
  put_varint(out, version);
  auto offset = out.size();
  put_u32(out, 0);
  return offset;
}

void end_element(bytes& out, std::size_t offset) {
  store_u32(out.data() + offset, static_cast<std::uint32_t>(out.size() - offset - 4));
}

expected<void> decode_packet(frame_view f, packet_view& out) {
  if (f.type != frame_type::packet)
    return malformed(f.type, "not a packet");
  reader r{f.body};
  std::uint64_t version = 0;
  std::uint32_t len = 0;
  auto& e = out.element;
  if (!r.u64(out.incarnation) || !r.string(out.channel) || !r.string(e.manifest)
      || !r.varint(version) || !r.u32(len) || !r.raw(len, e.payload) || !r.at_end())
    return malformed(f.type, r.what());
  if (out.channel.empty())
    return malformed(f.type, "empty channel name");
  if (e.manifest.empty())
    return malformed(f.type, "empty manifest");
  if (version == 0 || version > UINT32_MAX)
    return malformed(f.type, fmt::format("version {} outside 1..2^32-1", version));
  e.version = static_cast<std::uint32_t>(version);
  return {};
}

void put_packet(bytes& out, std::uint64_t incarnation, std::string_view channel,
                std::string_view manifest, std::uint32_t version, byte_span payload) {
  auto offset = begin_frame(out, frame_type::packet);
  put_u64(out, incarnation);
  put_string(out, channel);
  auto at = begin_element(out, manifest, version);
  out.insert(out.end(), payload.begin(), payload.end());
  end_element(out, at);
  end_frame(out, offset);
}

// -- handshake --------------------------------------------------------------------------

expected<void> peek_version(byte_span body, std::uint32_t& magic_out, std::uint16_t& version) {
  reader r{body};
  if (!r.u32(magic_out) || !r.u16(version))
    return error{errc::protocol_error, "handshake frame too short for magic and version"};
  return {};
}

expected<hello_msg> decode_hello(frame_view f) {
  if (f.type != frame_type::hello && f.type != frame_type::welcome)
    return malformed(f.type, "not a hello or welcome");
  hello_msg m;
  reader r{f.body};
  std::string_view host;
  std::string_view cluster;
  byte_span nonce;
  if (!r.u32(m.magic) || !r.u16(m.version) || !r.u64(m.incarnation) || !r.u32(m.max_frame)
      || !r.u16(m.port) || !r.string(host) || !r.string(cluster) || !r.raw(nonce_size, nonce))
    return malformed(f.type, r.what());
  if (m.magic != magic)
    return malformed(f.type, "wrong magic (not a troupe peer)");
  if (m.incarnation == 0)
    return malformed(f.type, "incarnation 0");
  if (host.empty() || m.port == 0)
    return malformed(f.type, "empty host or port 0");
  m.host = host;
  m.cluster = cluster;
  std::memcpy(m.nonce.data(), nonce.data(), nonce_size);
  if (f.type == frame_type::welcome) {
    std::uint8_t mac_len = 0;
    byte_span mac;
    if (!r.u8(mac_len))
      return malformed(f.type, r.what());
    if (mac_len != 0 && mac_len != mac_size)
      return malformed(f.type, fmt::format("mac of {} bytes", mac_len));
    if (!r.raw(mac_len, mac))
      return malformed(f.type, r.what());
    m.mac.assign(mac.begin(), mac.end());
  }
  if (!r.at_end())
    return malformed(f.type, r.what());
  return m;
}

std::pair<std::size_t, std::size_t> put_hello(bytes& out, frame_type type, const hello_msg& m) {
  auto offset = begin_frame(out, type);
  auto body_begin = out.size();
  put_u32(out, m.magic);
  put_u16(out, m.version);
  put_u64(out, m.incarnation);
  put_u32(out, m.max_frame);
  put_u16(out, m.port);
  put_string(out, m.host);
  put_string(out, m.cluster);
  out.insert(out.end(), m.nonce.begin(), m.nonce.end());
  auto covered_end = out.size();
  if (type == frame_type::welcome) {
    put_u8(out, static_cast<std::uint8_t>(m.mac.size()));
    out.insert(out.end(), m.mac.begin(), m.mac.end());
  }
  end_frame(out, offset);
  return {body_begin, covered_end};
}

expected<std::vector<std::uint8_t>> decode_auth(frame_view f) {
  reader r{f.body};
  std::uint8_t mac_len = 0;
  byte_span mac;
  if (f.type != frame_type::auth)
    return malformed(f.type, "not an auth frame");
  if (!r.u8(mac_len))
    return malformed(f.type, r.what());
  if (mac_len != 0 && mac_len != mac_size)
    return malformed(f.type, fmt::format("mac of {} bytes", mac_len));
  if (!r.raw(mac_len, mac) || !r.at_end())
    return malformed(f.type, r.what());
  return std::vector<std::uint8_t>(mac.begin(), mac.end());
}

void put_auth(bytes& out, byte_span mac) {
  auto offset = begin_frame(out, frame_type::auth);
  put_u8(out, static_cast<std::uint8_t>(mac.size()));
  out.insert(out.end(), mac.begin(), mac.end());
  end_frame(out, offset);
}

expected<refuse_msg> decode_refuse(frame_view f) {
  reader r{f.body};
  refuse_msg m;
  std::string_view reason;
  if (f.type != frame_type::refuse)
    return malformed(f.type, "not a refuse frame");
  if (!r.u8(m.code) || !r.string(reason) || !r.at_end())
    return malformed(f.type, r.what());
  m.reason = reason;
  return m;
}

void put_refuse(bytes& out, std::uint8_t code, std::string_view reason) {
  auto offset = begin_frame(out, frame_type::refuse);
  put_u8(out, code);
  put_string(out, reason);
  end_frame(out, offset);
}

expected<goodbye_msg> decode_goodbye(frame_view f) {
  reader r{f.body};
  std::uint8_t stopping = 0;
  std::string_view reason;
  if (f.type != frame_type::goodbye)
    return malformed(f.type, "not a goodbye frame");
  if (!r.u8(stopping) || !r.string(reason) || !r.at_end())
    return malformed(f.type, r.what());
  if (stopping > 1)
    return malformed(f.type, fmt::format("node-stopping flag {}", stopping));
  return goodbye_msg{stopping == 1, std::string{reason}};
}

void put_goodbye(bytes& out, bool node_stopping, std::string_view reason) {
  auto offset = begin_frame(out, frame_type::goodbye);
  put_u8(out, node_stopping ? 1 : 0);
  put_string(out, reason);
  end_frame(out, offset);
}

void put_empty(bytes& out, frame_type type) {
  auto offset = begin_frame(out, type);
  end_frame(out, offset);
}

} // namespace troupe::remote::wire
