# Every external dependency is found here, once. All come from Debian 12 packages
# (scripts/install-deps.sh installs them); nothing is downloaded at build time.

find_package(Threads REQUIRED)

include(troupe_find_caf)  # CAF::core, CAF::io (also used by troupeConfig.cmake)
if(NOT CAF_FOUND)
  message(FATAL_ERROR "CAF 0.17.6 not found (libcaf-dev: scripts/install-deps.sh)")
endif()

find_package(nlohmann_json 3.10 REQUIRED)
find_package(fmt 9 REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(PostgreSQL REQUIRED)  # libpq: the PostgreSQL journal (libpq-dev)
find_package(Boost 1.74 REQUIRED)
find_package(OpenSSL 3 REQUIRED)  # TLS of the transport (Boost.Asio SSL)
if(TROUPE_BUILD_TESTS)
  find_package(doctest REQUIRED)  # only the tests use it (not inside another project)
endif()
