# Every external dependency is found here, once. All come from Debian 12 packages
# (scripts/install-deps.sh installs them); nothing is downloaded at build time.

find_package(Threads REQUIRED)

# CAF 0.17.6 (libcaf-dev) ships neither CMake nor pkg-config files.
find_path(CAF_INCLUDE_DIR caf/all.hpp REQUIRED)
find_library(CAF_CORE_LIBRARY caf_core REQUIRED)
find_library(CAF_IO_LIBRARY caf_io REQUIRED)
if(EXISTS "${CAF_INCLUDE_DIR}/caf/detail/build_config.hpp")
  file(STRINGS "${CAF_INCLUDE_DIR}/caf/config.hpp" _caf_version_line REGEX "#define CAF_VERSION [0-9]+")
  string(REGEX MATCH "[0-9]+" CAF_VERSION "${_caf_version_line}")
  if(NOT CAF_VERSION EQUAL 1706)
    message(WARNING "troupe is written against CAF 0.17.6 (1706); found ${CAF_VERSION}")
  endif()
endif()
add_library(troupe_caf_core INTERFACE)
target_include_directories(troupe_caf_core SYSTEM INTERFACE ${CAF_INCLUDE_DIR})
target_link_libraries(troupe_caf_core INTERFACE ${CAF_CORE_LIBRARY} Threads::Threads)
add_library(CAF::core ALIAS troupe_caf_core)
add_library(troupe_caf_io INTERFACE)
target_link_libraries(troupe_caf_io INTERFACE ${CAF_IO_LIBRARY} troupe_caf_core)
add_library(CAF::io ALIAS troupe_caf_io)

find_package(nlohmann_json 3.10 REQUIRED)
find_package(fmt 9 REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(OpenSSL 3 REQUIRED)  # TLS of the transport (Boost.Asio SSL)
find_package(doctest REQUIRED)
