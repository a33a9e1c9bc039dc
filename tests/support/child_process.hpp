// Real child processes for tests: start a program, read its stdout line by line
// with a deadline, signal it (SIGKILL, SIGSTOP, SIGCONT), reap it.
//
// Helper programs live next to the test executables (tests/<layer>/programs/*.cpp
// build to troupe-test-<name>); program_path() finds them.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace troupe::test {

/// Absolute path of a program built next to the running test executable.
std::string program_path(const std::string& name);

class child_process {
public:
  /// Starts `program` with `args`; stdout is captured, stderr is inherited.
  child_process(const std::string& program, const std::vector<std::string>& args);
  ~child_process();  ///< kills (SIGKILL) and reaps the child if still running
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const { return pid_; }
  bool started() const { return pid_ > 0; }

  /// The next complete stdout line (without '\n'), or nullopt at EOF or timeout.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout = std::chrono::seconds{10});

  /// Whether more output may come: false once the child's stdout reached its end
  /// and every line of it was read.
  bool output_open() const { return out_fd_ >= 0 || !buffer_.empty(); }

  /// Reads lines until one starts with `prefix`; returns it (or nullopt). The lines
  /// read before it are appended to `*skipped` (if given), one per line.
  std::optional<std::string> wait_for_line(const std::string& prefix,
                                           std::chrono::milliseconds timeout = std::chrono::seconds{10},
                                           std::string* skipped = nullptr);

  void signal(int sig);
  /// Whether every thread of the child is stopped (after SIGSTOP: the stop
  /// reaches each thread on its own, after kill() returned).
  bool stopped() const;
  void kill() { signal(9); }

  /// Waits for the child to exit; returns its exit status (128 + signal when
  /// killed), or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout = std::chrono::seconds{10});

private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string buffer_;
  std::optional<int> status_;
};

} // namespace troupe::test
