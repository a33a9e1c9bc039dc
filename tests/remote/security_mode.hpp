// The transport suite runs three times: without authentication (the defaults),
// with a shared secret, and over TLS. TRANSPORT_TEST_CASE(name) defines the test
// case `name` and its variants "name - shared secret" and "name - TLS"; the nodes
// and peer processes a test starts (remote_node, peer_process) get the variant's
// settings first, so a test's own settings still win.
#pragma once

#include "remote/tls_pki.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

namespace troupe::test {

enum class security { plain, secret, tls };

inline security& current_security() {
  static security mode = security::plain;
  return mode;
}

/// The settings ("key=value") every node of the running variant gets.
inline std::vector<std::string> security_overrides() {
  switch (current_security()) {
    case security::plain:
      return {};
    case security::secret:
      return {"transport.secret=the suite's shared secret"};
    case security::tls: {
      // One CA and one node certificate per test process, made on first use.
      static auto pki = std::make_unique<test_pki>();
      static auto files = pki->issue("suite-node");
      return pki->overrides(files);
    }
  }
  return {};
}

/// Sets the variant for the duration of one test case.
class security_scope {
public:
  explicit security_scope(security s) { current_security() = s; }
  ~security_scope() { current_security() = security::plain; }
  security_scope(const security_scope&) = delete;
  security_scope& operator=(const security_scope&) = delete;
};

} // namespace troupe::test

#define TROUPE_TRANSPORT_TEST_IMPL(name, body)                                               \
  static void body();                                                                        \
  TEST_CASE(name) {                                                                          \
    troupe::test::security_scope scope{troupe::test::security::plain};                       \
    body();                                                                                  \
  }                                                                                          \
  TEST_CASE(name " - shared secret") {                                                       \
    troupe::test::security_scope scope{troupe::test::security::secret};                      \
    body();                                                                                  \
  }                                                                                          \
  TEST_CASE(name " - TLS") {                                                                 \
    troupe::test::security_scope scope{troupe::test::security::tls};                         \
    body();                                                                                  \
  }                                                                                          \
  static void body()

#define TRANSPORT_TEST_CASE(name) TROUPE_TRANSPORT_TEST_IMPL(name, DOCTEST_ANONYMOUS(transport_test_))
