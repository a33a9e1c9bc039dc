// A fresh directory per test, removed afterwards (kept when TROUPE_KEEP_TEST_FILES=1).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

namespace troupe::test {

class temp_dir {
public:
  temp_dir() {
    std::random_device rd;
    auto base = std::filesystem::temp_directory_path();
    for (;;) {
      path_ = base / ("troupe-test-" + std::to_string(rd()));
      if (std::filesystem::create_directory(path_))
        break;
    }
  }
  ~temp_dir() {
    auto keep = std::getenv("TROUPE_KEEP_TEST_FILES");
    if (!keep || std::string{keep} != "1") {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
  std::filesystem::path path_;
};

} // namespace troupe::test
