// A real, small file system for disk-full and read-only tests: a tmpfs of a given
// size mounted on a fresh directory (needs root or CAP_SYS_ADMIN; tests skip with a
// message where mounting is impossible), unmounted when the object goes away.
#pragma once

#include "support/temp_dir.hpp"

#include <sys/mount.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace troupe::test {

class small_tmpfs {
public:
  explicit small_tmpfs(std::size_t bytes) : mount_point_(dir_.file("mnt")) {
    std::filesystem::create_directory(mount_point_);
    auto opts = "size=" + std::to_string(bytes);
    if (::mount("tmpfs", mount_point_.c_str(), "tmpfs", 0, opts.c_str()) == 0)
      mounted_ = true;
    else
      why_ = std::strerror(errno);
  }
  ~small_tmpfs() {
    if (mounted_)
      ::umount2(mount_point_.c_str(), MNT_DETACH);
  }
  small_tmpfs(const small_tmpfs&) = delete;
  small_tmpfs& operator=(const small_tmpfs&) = delete;

  bool mounted() const { return mounted_; }
  /// Why mounting failed ("Operation not permitted", ...).
  const std::string& why() const { return why_; }
  std::string file(const std::string& name) const { return mount_point_ + "/" + name; }

  /// Makes the file system read-only (or writable again); false if refused.
  bool remount(bool read_only) {
    auto flags = MS_REMOUNT | (read_only ? MS_RDONLY : 0);
    return ::mount("tmpfs", mount_point_.c_str(), "tmpfs", flags, nullptr) == 0;
  }

  /// Fills the remaining space with `name`; returns the bytes written.
  std::size_t fill(const std::string& name) {
    std::FILE* f = std::fopen(file(name).c_str(), "wb");
    if (!f)
      return 0;
    std::vector<char> chunk(64 * 1024, 'x');
    std::size_t total = 0;
    for (;;) {
      auto n = std::fwrite(chunk.data(), 1, chunk.size(), f);
      total += n;
      if (n < chunk.size() || std::fflush(f) != 0)
        break;
    }
    std::fclose(f);
    return total;
  }

private:
  temp_dir dir_;
  std::string mount_point_;
  bool mounted_ = false;
  std::string why_;
};

} // namespace troupe::test
