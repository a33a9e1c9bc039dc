# Compiler settings shared by every troupe target.
#
# All targets get exactly the same flags through `troupe_build_flags`, so the one CAF
# precompiled header (built once, in `troupe_caf_pch`) is valid for every target that
# reuses it. A PCH built with different flags is silently ignored by GCC, which is
# why nothing may add per-target compile options or definitions.

set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  # The sloppiness settings let ccache cache translation units that use a PCH.
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env
      CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
      ${CCACHE_PROGRAM})
endif()

add_library(troupe_build_flags INTERFACE)
# troupe/version.hpp (TROUPE_VERSION) for --version; an include directory, not a
# definition, so the shared PCH stays valid.
configure_file(${PROJECT_SOURCE_DIR}/cmake/version.hpp.in
               ${PROJECT_BINARY_DIR}/generated/troupe/version.hpp @ONLY)
target_include_directories(troupe_build_flags INTERFACE ${PROJECT_BINARY_DIR}/generated)
target_compile_options(troupe_build_flags INTERFACE
  -Wall -Wextra -Werror -Wno-missing-field-initializers)
if(TROUPE_SANITIZE)
  target_compile_options(troupe_build_flags INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
    # GCC 12 reports false maybe-uninitialized errors inside libstdc++ under ASan.
    -Wno-maybe-uninitialized)
  target_link_options(troupe_build_flags INTERFACE -fsanitize=address,undefined)
  target_compile_definitions(troupe_build_flags INTERFACE TROUPE_SANITIZE=1)
endif()
if(TROUPE_TSAN)
  if(TROUPE_SANITIZE)
    message(FATAL_ERROR "TROUPE_TSAN and TROUPE_SANITIZE exclude each other (one build dir each)")
  endif()
  # Debian's CAF is not instrumented, so TSan would not see the synchronization of
  # its mailboxes and scheduler: every binary runs with the same CAF built with TSan
  # (scripts/build-caf-tsan.sh, which ./run tsan-test runs), found through its
  # RUNPATH. The headers stay Debian's (the script checks they are the same).
  set(TROUPE_TSAN_CAF_LIB ${CMAKE_BINARY_DIR}/caf/lib)
  file(GLOB troupe_tsan_caf ${TROUPE_TSAN_CAF_LIB}/libcaf_core.so.*)
  if(NOT troupe_tsan_caf)
    message(FATAL_ERROR "TROUPE_TSAN needs CAF built with ThreadSanitizer in "
            "${TROUPE_TSAN_CAF_LIB}: run scripts/build-caf-tsan.sh ${CMAKE_BINARY_DIR}/caf "
            "(./run tsan-test does)")
  endif()
  target_compile_options(troupe_build_flags INTERFACE -fsanitize=thread -fno-omit-frame-pointer
    # As under ASan, GCC 12 reports false maybe-uninitialized errors in libstdc++.
    -Wno-maybe-uninitialized)
  target_link_options(troupe_build_flags INTERFACE -fsanitize=thread
                      -Wl,-rpath,${TROUPE_TSAN_CAF_LIB})
  # TSan does not model fences (GCC: -Wtsan); Asio's fenced blocks are redundant with
  # the mutex of its handler queue, so they go rather than the warning.
  target_compile_definitions(troupe_build_flags INTERFACE TROUPE_TSAN=1
                             BOOST_ASIO_DISABLE_FENCED_BLOCK=1)
endif()
# Every target sees the same third-party usage requirements (e.g. fmt's FMT_SHARED),
# which keeps the shared PCH valid everywhere.
target_link_libraries(troupe_build_flags INTERFACE
  Threads::Threads CAF::io nlohmann_json::nlohmann_json fmt::fmt)

# The precompiled header for CAF. Targets that compile CAF code call
# troupe_use_caf_pch(<target>).
add_library(troupe_caf_pch OBJECT ${PROJECT_SOURCE_DIR}/cmake/caf_pch.cpp)
target_link_libraries(troupe_caf_pch PRIVATE troupe_build_flags)
target_precompile_headers(troupe_caf_pch PRIVATE ${PROJECT_SOURCE_DIR}/cmake/caf_pch.hpp)

function(troupe_use_caf_pch target)
  target_precompile_headers(${target} REUSE_FROM troupe_caf_pch)
endfunction()

# troupe_add_layer(<name> [DEPENDS targets...])
# A layer is one static library built from <dir>/src/*.cpp with public headers in
# <dir>/include. New source files are picked up without editing CMake files.
function(troupe_add_layer name)
  cmake_parse_arguments(arg "" "" "DEPENDS" ${ARGN})
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*.cpp)
  add_library(${name} STATIC ${sources})
  target_include_directories(${name}
    PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC troupe_build_flags ${arg_DEPENDS})
  troupe_use_caf_pch(${name})
endfunction()

# troupe_header_check: compiles every public header on its own (one generated
# translation unit per header, without the PCH), so that each header includes what
# it uses. Not part of `all`: run `./run check-headers`.
function(troupe_add_header_check)
  set(sources)
  foreach(layer actors persistence membership sharding streams)
    file(GLOB_RECURSE headers ${PROJECT_SOURCE_DIR}/${layer}/include/*.hpp)
    foreach(h ${headers})
      file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR}/${layer}/include ${h})
      string(MAKE_C_IDENTIFIER ${rel} id)
      set(tu ${CMAKE_BINARY_DIR}/header_check/${id}.cpp)
      file(CONFIGURE OUTPUT ${tu} CONTENT "#include <${rel}>\n#include <${rel}>  // include guard works\n")
      list(APPEND sources ${tu})
    endforeach()
  endforeach()
  add_library(troupe_header_check OBJECT EXCLUDE_FROM_ALL ${sources})
  target_link_libraries(troupe_header_check PRIVATE troupe_build_flags)
  foreach(layer actors persistence membership sharding streams)
    if(TARGET troupe_${layer})
      target_include_directories(troupe_header_check PRIVATE
        $<TARGET_PROPERTY:troupe_${layer},INTERFACE_INCLUDE_DIRECTORIES>)
    endif()
  endforeach()
  target_link_libraries(troupe_header_check PRIVATE SQLite::SQLite3)
endfunction()
