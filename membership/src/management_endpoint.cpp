#include "troupe/membership/management_endpoint.hpp"

#include "management_routes.hpp"

#include "troupe/actors/config.hpp"
#include "troupe/actors/node.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

namespace troupe::membership {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t max_request_bytes = 64 * 1024;
constexpr auto request_deadline = std::chrono::seconds{10};
constexpr int max_connections = 64;

} // namespace

http_response json_error(int status, std::string_view code, std::string_view what) {
  return http_response{status, "application/json",
                       nlohmann::json{{"error", what}, {"code", code}}.dump()};
}

struct management_endpoint::state : std::enable_shared_from_this<state> {
  struct session;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::thread thread;
  std::mutex routes_mtx;
  std::map<std::pair<std::string, std::string>, http_handler> routes;
  std::atomic<int> connections{0};
  std::atomic<bool> stopped{false};
  logger* log = nullptr;
  /// Open connections (used on the I/O thread only), closed by stop().
  std::vector<std::weak_ptr<session>> sessions;

  http_response dispatch(const http::request<http::string_body>& req) {
    std::string method{req.method_string()};
    std::string target{req.target()};
    if (auto q = target.find('?'); q != std::string::npos)
      target.resize(q);
    http_handler handler;
    bool path_known = false;
    {
      std::lock_guard<std::mutex> guard{routes_mtx};
      for (auto& [key, fn] : routes)
        if (key.second == target) {
          path_known = true;
          if (key.first == method)
            handler = fn;
        }
    }
    if (!path_known)
      return json_error(404, "not_found", fmt::format("no such resource: {}", target));
    if (!handler)
      return json_error(405, "method_not_allowed",
                        fmt::format("{} is not allowed on {}", method, target));
    try {
      return handler(req.body());
    } catch (const std::exception& ex) {  // a handler bug must not kill the endpoint
      return json_error(500, "internal", ex.what());
    }
  }

  void accept() {
    acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
      if (ec || self->stopped)
        return;
      if (self->connections.load() >= max_connections) {
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        self->serve(std::move(socket));
      }
      self->accept();
    });
  }

  struct session {
    beast::tcp_stream stream;
    beast::flat_buffer buffer{max_request_bytes};
    std::optional<http::request_parser<http::string_body>> parser;
    http::response<http::string_body> response;
    explicit session(tcp::socket s) : stream(std::move(s)) {}
  };

  void serve(tcp::socket socket) {
    ++connections;
    auto s = std::make_shared<session>(std::move(socket));
    std::erase_if(sessions, [](const std::weak_ptr<session>& w) { return w.expired(); });
    sessions.push_back(s);
    read(s);
  }

  void finish(const std::shared_ptr<session>& s) {
    beast::error_code ignored;
    s->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    s->stream.close();
    --connections;
  }

  void read(std::shared_ptr<session> s) {
    s->parser.emplace();
    s->parser->header_limit(max_request_bytes);
    s->parser->body_limit(max_request_bytes);
    s->stream.expires_after(request_deadline);
    http::async_read(s->stream, s->buffer, *s->parser,
                     [self = shared_from_this(), s](beast::error_code ec, std::size_t) {
                       if (ec) {
                         // A malformed or oversize request gets an answer; a closed
                         // or timed-out connection just ends.
                         if (ec != http::error::end_of_stream && ec != beast::error::timeout
                             && ec != asio::error::operation_aborted
                             && ec != asio::error::connection_reset) {
                           self->respond(s, json_error(400, "bad_request", ec.message()), false);
                           return;
                         }
                         self->finish(s);
                         return;
                       }
                       auto req = s->parser->release();
                       bool keep = req.keep_alive();
                       self->respond(s, self->dispatch(req), keep);
                     });
  }

  void respond(std::shared_ptr<session> s, http_response r, bool keep_alive) {
    s->response = http::response<http::string_body>{static_cast<http::status>(r.status), 11};
    s->response.set(http::field::content_type, r.content_type);
    s->response.set(http::field::server, "troupe");
    s->response.keep_alive(keep_alive);
    s->response.body() = std::move(r.body);
    s->response.prepare_payload();
    s->stream.expires_after(request_deadline);
    http::async_write(s->stream, s->response,
                      [self = shared_from_this(), s, keep_alive](beast::error_code ec, std::size_t) {
                        if (ec || !keep_alive || self->stopped)
                          self->finish(s);
                        else
                          self->read(s);
                      });
  }
};

expected<std::shared_ptr<management_endpoint>> management_endpoint::start(node& n) {
  auto& cfg = n.config();
  auto host = cfg.get_string("management.http.host");
  auto port = cfg.get_int("management.http.port");
  if (port < 0 || port > 65535)
    return error{errc::invalid_config,
                 fmt::format("config key 'management.http.port': {} is not a port (0..65535)", port)};
  auto st = std::make_shared<state>();
  st->log = &n.log();
  beast::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec)
    return error{errc::invalid_config, fmt::format("config key 'management.http.host': '{}' is "
                                                   "not an IP address: {}",
                                                   host, ec.message())};
  tcp::endpoint ep{address, static_cast<std::uint16_t>(port)};
  st->acceptor.open(ep.protocol(), ec);
  if (!ec)
    st->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec)
    st->acceptor.bind(ep, ec);
  if (!ec)
    st->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return error{errc::io_error, fmt::format("management endpoint: cannot listen on {}:{}: {}",
                                             host, port, ec.message())};
  std::shared_ptr<management_endpoint> ep_handle{new management_endpoint{st}};
  add_cluster_routes(n, *ep_handle);
  st->accept();
  st->thread = std::thread{[st] { st->io.run(); }};
  n.log().info("management", "HTTP endpoint on http://{}:{}", host, ep_handle->port());
  n.context().set_extension<management_endpoint>(ep_handle);
  n.add_stop_hook("management endpoint", [ep_handle] { ep_handle->stop(); });
  return ep_handle;
}

std::shared_ptr<management_endpoint> management_endpoint::of(node& n) {
  return n.context().extension<management_endpoint>();
}

management_endpoint::~management_endpoint() {
  stop();
}

std::uint16_t management_endpoint::port() const noexcept {
  beast::error_code ec;
  auto ep = state_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void management_endpoint::add_route(std::string method, std::string path, http_handler handler) {
  std::lock_guard<std::mutex> guard{state_->routes_mtx};
  state_->routes[{std::move(method), std::move(path)}] = std::move(handler);
}

void management_endpoint::stop() {
  if (state_->stopped.exchange(true))
    return;
  // Close the acceptor and every connection and let the I/O thread run out of
  // work: each pending handler then runs (aborted) and releases the state it
  // holds. Stopping the io_context instead would leave those handlers, and with
  // them the state, alive forever (a reference cycle through the io_context).
  asio::post(state_->io, [st = state_] {
    beast::error_code ignored;
    st->acceptor.close(ignored);
    for (auto& w : st->sessions)
      if (auto s = w.lock())
        s->stream.close();
    st->sessions.clear();
  });
  if (state_->thread.joinable())
    state_->thread.join();
}

void add_management_config_keys(config_schema& s) {
  s.add("management.http.host", config_type::string, std::string{"127.0.0.1"},
        "Interface of the HTTP management endpoint (cluster members, leave/down, health, "
        "metrics); keep it on loopback unless a firewall guards it.");
  s.add("management.http.port", config_type::integer, std::int64_t{0},
        "Port of the HTTP management endpoint; 0 picks a free port (the node logs it).",
        config_range::of(0, 65535));
}

} // namespace troupe::membership
