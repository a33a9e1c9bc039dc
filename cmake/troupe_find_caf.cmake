# Finds CAF 0.17.6 (libcaf-dev ships neither CMake nor pkg-config files) and defines
# the imported targets CAF::core and CAF::io. Used by troupe's own build
# (troupe_dependencies.cmake) and, installed next to troupeConfig.cmake, by every
# project that calls find_package(troupe): both find CAF the same way.
# Sets CAF_FOUND; the caller decides whether a missing CAF is fatal.
if(TARGET CAF::core AND TARGET CAF::io)
  set(CAF_FOUND TRUE)
  return()
endif()
find_package(Threads REQUIRED)
find_path(CAF_INCLUDE_DIR caf/all.hpp)
find_library(CAF_CORE_LIBRARY caf_core)
find_library(CAF_IO_LIBRARY caf_io)
if(NOT CAF_INCLUDE_DIR OR NOT CAF_CORE_LIBRARY OR NOT CAF_IO_LIBRARY)
  set(CAF_FOUND FALSE)
  return()
endif()
set(CAF_FOUND TRUE)
file(STRINGS "${CAF_INCLUDE_DIR}/caf/config.hpp" _caf_version_line
     REGEX "#define CAF_VERSION [0-9]+")
string(REGEX MATCH "[0-9]+" CAF_VERSION "${_caf_version_line}")
if(CAF_VERSION AND NOT CAF_VERSION EQUAL 1706)
  message(WARNING "troupe is written against CAF 0.17.6 (1706); found ${CAF_VERSION}")
endif()
add_library(CAF::core UNKNOWN IMPORTED)
set_target_properties(CAF::core PROPERTIES
  IMPORTED_LOCATION "${CAF_CORE_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${CAF_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES Threads::Threads)
add_library(CAF::io UNKNOWN IMPORTED)
set_target_properties(CAF::io PROPERTIES
  IMPORTED_LOCATION "${CAF_IO_LIBRARY}"
  INTERFACE_LINK_LIBRARIES CAF::core)
