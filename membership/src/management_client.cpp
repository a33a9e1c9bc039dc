#include "troupe/membership/management_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

namespace troupe::membership {

expected<http_response> management_call(const remote::node_address& at, const std::string& method,
                                        const std::string& target, const std::string& body,
                                        duration timeout) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  using tcp = boost::asio::ip::tcp;
  auto verb = http::string_to_verb(method);
  if (verb == http::verb::unknown)
    return error{errc::invalid_argument, fmt::format("'{}' is not an HTTP method", method)};
  try {
    boost::asio::io_context io;
    tcp::resolver resolver{io};
    beast::tcp_stream stream{io};
    stream.expires_after(timeout);
    stream.connect(resolver.resolve(at.host, std::to_string(at.port)));
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, at.to_string());
    if (!body.empty())
      req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    return http_response{static_cast<int>(res.result_int()),
                         std::string{res[http::field::content_type]}, res.body()};
  } catch (const std::exception& ex) {
    return error{errc::io_error, fmt::format("cannot reach the management endpoint at {}: {}",
                                             at.to_string(), ex.what())};
  }
}

} // namespace troupe::membership
