#include "troupe/membership/management_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include <optional>

namespace troupe::membership {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

error unreachable(const remote::node_address& at, const std::string& why) {
  return error{errc::io_error,
               fmt::format("cannot reach the management endpoint at {}: {}", at.to_string(), why)};
}

/// One call's steps, each asynchronous: Beast's stream timeout bounds only
/// asynchronous operations, and a synchronous read from a node that accepted the
/// connection but does not run (SIGSTOP, a hung process) would never return.
class call {
public:
  call(const remote::node_address& at, http::request<http::string_body> req, duration timeout)
    : at_(at), req_(std::move(req)), timeout_(timeout) {}

  expected<http_response> run() {
    stream_.expires_after(timeout_);
    resolver_.async_resolve(at_.host, std::to_string(at_.port),
                            [this](beast::error_code ec, tcp::resolver::results_type hosts) {
                              if (ec)
                                return fail("resolving", ec);
                              stream_.async_connect(hosts, [this](beast::error_code e, auto&&) {
                                if (e)
                                  return fail("connecting", e);
                                write();
                              });
                            });
    // The resolver is outside the stream's timeout: the whole call is bounded here.
    io_.run_for(timeout_ + std::chrono::milliseconds{100});
    if (!outcome_) {
      resolver_.cancel();
      beast::error_code ignored;
      stream_.socket().close(ignored);
      outcome_ = unreachable(at_, no_answer());
    }
    return std::move(*outcome_);
  }

private:
  void write() {
    http::async_write(stream_, req_, [this](beast::error_code ec, std::size_t) {
      if (ec)
        return fail("sending the request", ec);
      http::async_read(stream_, buffer_, res_, [this](beast::error_code e, std::size_t) {
        if (e)
          return fail("reading the response", e);
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
        outcome_ = http_response{static_cast<int>(res_.result_int()),
                                 std::string{res_[http::field::content_type]}, res_.body()};
      });
    });
  }

  void fail(const char* step, const beast::error_code& ec) {
    outcome_ = unreachable(at_, ec == beast::error::timeout
                                  ? no_answer()
                                  : fmt::format("{}: {}", step, ec.message()));
  }

  std::string no_answer() const {
    return fmt::format("no answer within {} ms",
                       std::chrono::duration_cast<std::chrono::milliseconds>(timeout_).count());
  }

  remote::node_address at_;
  http::request<http::string_body> req_;
  duration timeout_;
  boost::asio::io_context io_;
  tcp::resolver resolver_{io_};
  beast::tcp_stream stream_{io_};
  beast::flat_buffer buffer_;
  http::response<http::string_body> res_;
  std::optional<expected<http_response>> outcome_;
};

} // namespace

expected<http_response> management_call(const remote::node_address& at, const std::string& method,
                                        const std::string& target, const std::string& body,
                                        duration timeout) {
  auto verb = http::string_to_verb(method);
  if (verb == http::verb::unknown)
    return error{errc::invalid_argument, fmt::format("'{}' is not an HTTP method", method)};
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, at.to_string());
  if (!body.empty())
    req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  try {
    return call{at, std::move(req), timeout}.run();
  } catch (const std::exception& ex) {
    return unreachable(at, ex.what());
  }
}

} // namespace troupe::membership
