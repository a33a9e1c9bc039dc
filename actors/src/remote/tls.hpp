// TLS for the transport: mutual authentication with certificates and encryption of
// every byte after the TCP connect (docs/transport.md, "TLS").
//
// The configuration (certificates, trusted CA, TLS 1.3 only, peers must present a
// certificate) is a Boost.Asio ssl::context. A connection's TLS state is OpenSSL
// driven over memory BIOs instead of Asio's ssl::stream: the engine keeps owning
// the socket, so that the I/O thread (reads, batched writes) and a sender thread
// (a direct write of a lone frame) can both encrypt into one session, one at a
// time under the session's lock, while TLS records leave in the order they were
// sealed (the engine's send queue decides who writes when).
//
// Thread-safety: tls_context is immutable after create(). Every member of
// tls_session locks the session's mutex, so the I/O thread and senders may call
// them concurrently.
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/actors/remote/wire.hpp"

#include <memory>
#include <mutex>
#include <string>

struct ssl_st;

namespace troupe::remote::detail {

struct tls_settings {
  bool enabled = false;
  std::string certificate;  ///< PEM: this node's certificate (and its chain)
  std::string private_key;  ///< PEM: its private key
  std::string ca;           ///< PEM: the CA certificate(s) peers' certificates must chain to
};

class tls_context {
public:
  /// Loads and checks the files; errors are invalid_config naming the config key,
  /// the file and OpenSSL's reason.
  static expected<std::shared_ptr<tls_context>> create(const tls_settings& s);
  ~tls_context();

  struct impl;
  impl& get() noexcept { return *impl_; }

private:
  explicit tls_context(std::unique_ptr<impl> x);
  std::unique_ptr<impl> impl_;
};

class tls_session {
public:
  enum class step { more, done, failed };

  tls_session(tls_context& ctx, bool client);
  ~tls_session();
  tls_session(const tls_session&) = delete;
  tls_session& operator=(const tls_session&) = delete;

  /// Ciphertext that arrived from the peer (handshake or records).
  void feed(wire::byte_span cipher);
  /// Advances the handshake with what was fed; appends what to send to `out`.
  /// On `failed`, failure() says why (e.g. the certificate did not verify).
  step handshake(wire::bytes& out);
  /// An upper bound of the plaintext that read() can return now.
  std::size_t buffered() const;
  /// Decrypts fed records into [out, out + room); returns the bytes written (0:
  /// more input needed) or an error (a bad record, a TLS alert, close_notify).
  expected<std::size_t> read(std::uint8_t* out, std::size_t room);
  /// Seals `plain` into records appended to `out` (after anything the session
  /// still owes the peer).
  expected<void> encrypt(wire::byte_span plain, wire::bytes& out);

  const error& failure() const noexcept { return failure_; }
  /// The peer certificate's subject, for logs ("" before the handshake).
  std::string peer_subject() const;

private:
  void drain(wire::bytes& out);
  error last_error(std::string_view what, int ret);

  mutable std::mutex mtx_;
  ssl_st* ssl_ = nullptr;
  error failure_;
};

} // namespace troupe::remote::detail
