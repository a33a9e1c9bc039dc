#include "remote/tls.hpp"

#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <fmt/core.h>

#include <array>
#include <filesystem>

namespace troupe::remote::detail {

namespace ssl = boost::asio::ssl;

struct tls_context::impl {
  ssl::context ctx{ssl::context::tls};
};

namespace {

/// OpenSSL's queued reasons, oldest first, "; "-separated (clears the queue).
std::string openssl_reasons() {
  std::string all;
  while (auto code = ERR_get_error()) {
    std::array<char, 256> buf{};
    ERR_error_string_n(code, buf.data(), buf.size());
    if (!all.empty())
      all += "; ";
    all += buf.data();
  }
  return all;
}

error bad_file(std::string_view key, const std::string& file, std::string_view why) {
  return error{errc::invalid_config,
               fmt::format("config key '{}': cannot use '{}': {}", key, file, why)};
}

} // namespace

tls_context::tls_context(std::unique_ptr<impl> x) : impl_(std::move(x)) {}
tls_context::~tls_context() = default;

expected<std::shared_ptr<tls_context>> tls_context::create(const tls_settings& s) {
  for (auto [key, file] : {std::pair{"transport.tls.certificate", &s.certificate},
                           std::pair{"transport.tls.private-key", &s.private_key},
                           std::pair{"transport.tls.ca", &s.ca}}) {
    if (file->empty())
      return error{errc::invalid_config,
                   fmt::format("config key '{}': transport.tls.enabled needs a PEM file", key)};
    std::error_code ec;
    if (!std::filesystem::is_regular_file(*file, ec))
      return bad_file(key, *file, "no such file");
  }
  std::unique_ptr<impl> x;
  try {
    x = std::make_unique<impl>();
  } catch (const std::exception& ex) {
    return error{errc::internal, fmt::format("cannot create a TLS context: {}", ex.what())};
  }
  auto& ctx = x->ctx;
  auto* native = ctx.native_handle();
  ERR_clear_error();
  boost::system::error_code ec;
  // TLS 1.3 only: every node is troupe, and 1.3 has no renegotiation, no weak
  // suites and a one-round-trip handshake.
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2
                    | ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1
                    | ssl::context::no_tlsv1_2,
                  ec);
  SSL_CTX_set_min_proto_version(native, TLS1_3_VERSION);
  // No session resumption: connections are long-lived, and tickets would be
  // extra records after the handshake.
  SSL_CTX_set_num_tickets(native, 0);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  if (ctx.use_certificate_chain_file(s.certificate, ec); ec)
    return bad_file("transport.tls.certificate", s.certificate, ec.message());
  if (ctx.use_private_key_file(s.private_key, ssl::context::pem, ec); ec)
    return bad_file("transport.tls.private-key", s.private_key, ec.message());
  if (SSL_CTX_check_private_key(native) != 1)
    return bad_file("transport.tls.private-key", s.private_key,
                    fmt::format("the key does not belong to the certificate '{}' ({})",
                                s.certificate, openssl_reasons()));
  if (ctx.load_verify_file(s.ca, ec); ec)
    return bad_file("transport.tls.ca", s.ca, ec.message());
  // Mutual authentication: both ends present a certificate that chains to the CA.
  if (ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec); ec)
    return error{errc::internal, fmt::format("cannot set the TLS verify mode: {}", ec.message())};
  return std::shared_ptr<tls_context>{new tls_context{std::move(x)}};
}

// -- session -------------------------------------------------------------------------------

tls_session::tls_session(tls_context& ctx, bool client) {
  ssl_ = SSL_new(ctx.get().ctx.native_handle());
  if (ssl_ == nullptr) {
    failure_ = error{errc::internal, fmt::format("SSL_new failed: {}", openssl_reasons())};
    return;
  }
  auto* in = BIO_new(BIO_s_mem());
  auto* out = BIO_new(BIO_s_mem());
  // An empty memory BIO reports "retry" (not EOF) when read.
  BIO_set_mem_eof_return(in, -1);
  BIO_set_mem_eof_return(out, -1);
  SSL_set_bio(ssl_, in, out);
  if (client)
    SSL_set_connect_state(ssl_);
  else
    SSL_set_accept_state(ssl_);
}

tls_session::~tls_session() {
  if (ssl_ != nullptr)
    SSL_free(ssl_);
}

void tls_session::feed(wire::byte_span cipher) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (ssl_ == nullptr || cipher.empty())
    return;
  // A memory BIO grows as needed; it takes everything.
  BIO_write(SSL_get_rbio(ssl_), cipher.data(), static_cast<int>(cipher.size()));
}

void tls_session::drain(wire::bytes& out) {
  auto* bio = SSL_get_wbio(ssl_);
  auto n = BIO_ctrl_pending(bio);
  if (n == 0)
    return;
  auto at = out.size();
  out.resize(at + n);
  auto got = BIO_read(bio, out.data() + at, static_cast<int>(n));
  out.resize(at + static_cast<std::size_t>(std::max(got, 0)));
}

error tls_session::last_error(std::string_view what, int ret) {
  auto code = SSL_get_error(ssl_, ret);
  auto reasons = openssl_reasons();
  std::string text;
  if (code == SSL_ERROR_ZERO_RETURN) {
    text = fmt::format("{}: the peer closed the TLS session", what);
  } else {
    text = fmt::format("{}: {}", what, reasons.empty() ? "TLS error" : reasons);
    auto verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK)
      text += fmt::format(" (certificate: {})", X509_verify_cert_error_string(verify));
  }
  return error{errc::unauthorized, std::move(text)};
}

tls_session::step tls_session::handshake(wire::bytes& out) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (ssl_ == nullptr)
    return step::failed;
  ERR_clear_error();
  auto r = SSL_do_handshake(ssl_);
  drain(out);  // also on failure: the alert tells the peer why
  if (r == 1)
    return step::done;
  auto code = SSL_get_error(ssl_, r);
  if (code == SSL_ERROR_WANT_READ)
    return step::more;
  failure_ = last_error("TLS handshake failed", r);
  return step::failed;
}

std::size_t tls_session::buffered() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return ssl_ == nullptr ? 0 : BIO_ctrl_pending(SSL_get_rbio(ssl_)) + SSL_pending(ssl_);
}

expected<std::size_t> tls_session::read(std::uint8_t* out, std::size_t room) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (ssl_ == nullptr)
    return failure_;
  std::size_t total = 0;
  while (total < room) {
    ERR_clear_error();
    std::size_t got = 0;
    auto r = SSL_read_ex(ssl_, out + total, room - total, &got);
    if (r == 1) {
      total += got;
      continue;
    }
    auto code = SSL_get_error(ssl_, r);
    if (code == SSL_ERROR_WANT_READ)
      break;
    failure_ = last_error("TLS read failed", r);
    return failure_;
  }
  return total;
}

expected<void> tls_session::encrypt(wire::byte_span plain, wire::bytes& out) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (ssl_ == nullptr)
    return failure_;
  ERR_clear_error();
  if (!plain.empty()) {
    std::size_t written = 0;
    auto r = SSL_write_ex(ssl_, plain.data(), plain.size(), &written);
    if (r != 1 || written != plain.size()) {
      failure_ = last_error("TLS write failed", r);
      return failure_;
    }
  }
  drain(out);
  return {};
}

std::string tls_session::peer_subject() const {
  std::lock_guard<std::mutex> guard{mtx_};
  if (ssl_ == nullptr)
    return {};
  auto* cert = SSL_get0_peer_certificate(ssl_);
  if (cert == nullptr)
    return {};
  std::array<char, 256> buf{};
  X509_NAME_oneline(X509_get_subject_name(cert), buf.data(), static_cast<int>(buf.size()));
  return buf.data();
}

} // namespace troupe::remote::detail
