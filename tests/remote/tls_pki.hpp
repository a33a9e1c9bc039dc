// Certificates for the TLS tests, made in the test with the openssl command line,
// with exactly the commands of docs/transport.md's how-to ("TLS"): a cluster CA,
// and a key and certificate per node signed by it.
#pragma once

#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace troupe::test {

class test_pki {
public:
  struct node_files {
    std::string certificate;
    std::string private_key;
  };

  /// Makes a CA named `ca_name` in a directory of its own.
  explicit test_pki(const std::string& ca_name = "troupe test CA") {
    openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", dir_.file("ca.key"), "-out", dir_.file("ca.pem"), "-days",
             "3650", "-subj", "/CN=" + ca_name, "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
    std::ofstream ext{dir_.file("node.ext")};
    ext << "basicConstraints = CA:FALSE\n"
           "keyUsage = critical, digitalSignature\n"
           "extendedKeyUsage = serverAuth, clientAuth\n";
  }

  /// A key and a certificate for node `name`, signed by this CA.
  node_files issue(const std::string& name) const {
    node_files f{dir_.file(name + ".pem"), dir_.file(name + ".key")};
    openssl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f.private_key, "-out", dir_.file(name + ".csr"), "-subj", "/CN=" + name});
    openssl({"x509", "-req", "-in", dir_.file(name + ".csr"), "-CA", dir_.file("ca.pem"), "-CAkey",
             dir_.file("ca.key"), "-CAcreateserial", "-out", f.certificate, "-days", "825",
             "-extfile", dir_.file("node.ext")});
    return f;
  }

  std::string ca() const { return dir_.file("ca.pem"); }
  std::string ca_key() const { return dir_.file("ca.key"); }
  std::string file(const std::string& name) const { return dir_.file(name); }

  /// The config overrides ("key=value") of a TLS node using `f`.
  std::vector<std::string> overrides(const node_files& f) const {
    return {"transport.tls.enabled=true", "transport.tls.certificate=" + f.certificate,
            "transport.tls.private-key=" + f.private_key, "transport.tls.ca=" + ca()};
  }

private:
  static std::string openssl_path() {
    std::string path = std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin";
    for (std::size_t at = 0; at <= path.size();) {
      auto end = path.find(':', at);
      auto dir = path.substr(at, end == std::string::npos ? std::string::npos : end - at);
      auto candidate = std::filesystem::path{dir.empty() ? "." : dir} / "openssl";
      if (std::filesystem::exists(candidate))
        return candidate.string();
      if (end == std::string::npos)
        break;
      at = end + 1;
    }
    return "/usr/bin/openssl";
  }

  static void openssl(const std::vector<std::string>& args) {
    child_process p{openssl_path(), args};
    REQUIRE_MESSAGE(p.started(), "cannot run openssl (scripts/install-deps.sh installs it)");
    while (p.read_line())
      ;  // its stdout (if any) is not needed
    auto status = p.wait(std::chrono::seconds{60});
    REQUIRE_MESSAGE(status, "openssl did not finish");
    REQUIRE_MESSAGE(*status == 0, "openssl " << args.front() << " failed with status " << *status);
  }

  temp_dir dir_;
};

} // namespace troupe::test
