// The main() of every doctest suite. On top of doctest's own main it refuses two
// ways in which a test can silently not run:
//
// - A test case name that ctest's discovery (doctest_discover_tests) cannot turn
//   into one entry that runs exactly that test: ';' splits the entry in two, '*'
//   and '?' are filter wildcards, '\' escapes the next character, '[' and ']'
//   change how CMake splits lists, and doctest matches names ignoring case, so two
//   names may not differ by case only. Any run, listing included, fails with the
//   offending name; since discovery lists the test cases after every link, the
//   build fails.
// - A run whose filters match no test case (a ctest entry whose filter names a
//   test that no longer exists, or only half of its name) fails instead of
//   reporting success with 0 test cases. Listing, counting, --help and --version
//   still exit 0.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cctype>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>

namespace {

/// Counts the test cases a run executes. A listener sees every run; doctest calls
/// test_run_start only for runs that execute tests (not for queries).
struct run_counter : doctest::IReporter {
  static inline bool ran = false;
  static inline unsigned executed = 0;

  explicit run_counter(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override { ran = true; }
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override { ++executed; }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

REGISTER_LISTENER("troupe-run-counter", 1, run_counter);

std::string contains_char(char c, const char* why) {
  return std::string{"contains '"} + c + "' (" + why + ")";
}

/// What makes `name` unusable as a ctest entry, or empty.
std::string name_problem(std::string_view name) {
  if (name.empty())
    return "is empty";
  for (char c : name) {
    switch (c) {
      case ';':
        return "contains ';' (ctest splits the entry there)";
      case '*':
      case '?':
        return contains_char(c, "is a doctest filter wildcard");
      case '\\':
        return "contains '\\' (it escapes the next character of a doctest filter)";
      case '[':
      case ']':
        return contains_char(c, "changes how CMake splits the list of discovered tests");
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
          return "contains a control character";
    }
  }
  return {};
}

std::string lower(std::string_view s) {
  std::string r{s};
  for (auto& c : r)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

/// Reports every registered test case whose name ctest cannot run on its own.
/// getRegisteredTests() is doctest's registry (defined by DOCTEST_CONFIG_IMPLEMENT).
bool names_are_runnable() {
  bool ok = true;
  std::map<std::string, const doctest::detail::TestCase*> seen;
  for (auto& tc : doctest::detail::getRegisteredTests()) {
    std::string_view name = tc.m_name;
    auto where = std::string{tc.m_file.c_str()} + ":" + std::to_string(tc.m_line);
    if (auto problem = name_problem(name); !problem.empty()) {
      std::fprintf(stderr, "%s: test case \"%s\" %s; rename it\n", where.c_str(), tc.m_name,
                   problem.c_str());
      ok = false;
    }
    auto [it, fresh] = seen.emplace(lower(name), &tc);
    if (!fresh) {
      std::fprintf(stderr,
                   "%s: test case \"%s\" has the name of the one at %s:%d (doctest filters "
                   "ignore case, so one ctest entry would run both); rename it\n",
                   where.c_str(), tc.m_name, it->second->m_file.c_str(), it->second->m_line);
      ok = false;
    }
  }
  return ok;
}

} // namespace

int main(int argc, char** argv) {
  if (!names_are_runnable())
    return 2;
  doctest::Context context{argc, argv};
  int result = context.run();
  if (context.shouldExit() || !run_counter::ran)
    return result;  // --help, --version, --list-*, --count, --no-run
  if (run_counter::executed == 0) {
    std::fprintf(stderr, "doctest: no test case matches the filters; nothing ran\n");
    return result == 0 ? 3 : result;
  }
  return result;
}
