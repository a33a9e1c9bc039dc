// docs/getting-started.md shows samples/starter's files whole, as they are; the
// install test (tests/install/install_starter.cmake) compiles and runs them against
// an installed troupe, so the code of the page is compiled and tested.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace {

std::string text_of(const std::filesystem::path& p) {
  std::ifstream in{p};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

} // namespace

TEST_CASE("docs/getting-started.md shows every file of samples/starter whole and as it is") {
  auto root = std::filesystem::path{__FILE__}.parent_path().parent_path().parent_path();
  auto doc = text_of(root / "docs" / "getting-started.md");
  REQUIRE_FALSE(doc.empty());
  std::size_t shown = 0;
  for (auto& entry : std::filesystem::directory_iterator{root / "samples" / "starter"}) {
    auto name = entry.path().filename().string();
    INFO(name);
    auto file = text_of(entry.path());
    REQUIRE_FALSE(file.empty());
    // **`samples/starter/NAME`** then a fenced block holding the file.
    auto title = doc.find("**`samples/starter/" + name + "`**\n\n```");
    REQUIRE(title != std::string::npos);
    auto begin = doc.find('\n', doc.find("```", title)) + 1;
    auto end = doc.find("\n```\n", begin);
    REQUIRE(end != std::string::npos);
    CHECK(doc.substr(begin, end + 1 - begin) == file);
    ++shown;
  }
  CHECK(shown == 4);
}
