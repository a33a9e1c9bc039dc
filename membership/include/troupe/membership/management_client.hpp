// Calls a node's management endpoint (management_endpoint.hpp) over HTTP/1.1: what
// `troupe cluster ...`, tests and benchmarks use.
//
//   auto r = troupe::membership::management_call({"127.0.0.1", 8001}, "GET", "/cluster/members");
//   if (r && r->status == 200) ... r->body ...
//
// Blocking, one connection per call, bounded by `timeout`. Errors (io_error) name
// the address; an HTTP error status is a successful call with that status.
// Thread-safety: free function, any thread.
#pragma once

#include "troupe/actors/expected.hpp"
#include "troupe/actors/remote/address.hpp"
#include "troupe/membership/management_endpoint.hpp"
#include "troupe/membership/timestamp.hpp"

#include <string>

namespace troupe::membership {

expected<http_response> management_call(const remote::node_address& at, const std::string& method,
                                        const std::string& target, const std::string& body = {},
                                        duration timeout = std::chrono::seconds{10});

} // namespace troupe::membership
