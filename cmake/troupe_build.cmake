# Compiler settings shared by every troupe target.
#
# All targets get exactly the same flags through `troupe_build_flags` (tests through
# `troupe_test_flags`), so the CAF precompiled header built once for them
# (`troupe_caf_pch`, `troupe_test_pch`) is valid for every target that reuses it. A
# PCH built with different flags is silently ignored by GCC, which is why nothing
# may add per-target compile options or definitions.

set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  # The sloppiness settings let ccache cache translation units that use a PCH.
  # Depend mode: on a miss ccache takes the included files from the compiler's
  # -MD output instead of running the preprocessor first, which a cold build
  # pays on every file (the actors and persistence layers: 147 s without it,
  # 126 s with it, on 2 cores); hits are as with the default direct mode.
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env
      CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
      CCACHE_DEPEND=1
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
  # Compile time decides whether this suite fits in CI (docs/contributing.md): on a
  # large test file GCC 12 took 384 s with -O2 -g and every UBSan check, 84 s with
  # the flags below (Release -O3: 57 s). -O1 -g1 (after the build type's flags, so
  # they win) keep symbolized stack traces with lines. UBSan's `null` and
  # `alignment` checks, instrumenting every inlined pointer use of CAF and the
  # standard library, were most of the rest: a null dereference still faults under
  # ASan, with its stack trace, and x86 does not trap on misalignment. `vptr`
  # (downcast type checks) was dropped with them: CAF's type-erased messages are
  # cast by type number, not by dynamic type.
  target_compile_options(troupe_build_flags INTERFACE
    -O1 -g1
    -fsanitize=address,undefined -fno-sanitize=vptr,null,alignment
    -fno-omit-frame-pointer -fno-sanitize-recover=undefined
    # GCC 12 reports false maybe-uninitialized errors inside libstdc++ under ASan.
    -Wno-maybe-uninitialized)
  target_link_options(troupe_build_flags INTERFACE -fsanitize=address,undefined
                      -fno-sanitize=vptr,null,alignment)
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
  # -O1 -g1 as under ASan (compile time; TSan needs no more for line numbers).
  target_compile_options(troupe_build_flags INTERFACE -O1 -g1
    -fsanitize=thread -fno-omit-frame-pointer
    # As under ASan, GCC 12 reports false maybe-uninitialized errors in libstdc++.
    -Wno-maybe-uninitialized)
  target_link_options(troupe_build_flags INTERFACE -fsanitize=thread
                      -Wl,-rpath,${TROUPE_TSAN_CAF_LIB})
  # TSan does not model fences (GCC: -Wtsan); Asio's fenced blocks are redundant with
  # the mutex of its handler queue, so they go rather than the warning.
  target_compile_definitions(troupe_build_flags INTERFACE TROUPE_TSAN=1
                             BOOST_ASIO_DISABLE_FENCED_BLOCK=1)
endif()
# Test code's optimization (troupe_use_test_pch marks its targets; last, so it
# wins over the build type's and the sanitizers' -O); see troupe_test_flags below.
set(troupe_test_code_opt)  # other build types: the build type's
if(TROUPE_SANITIZE OR TROUPE_TSAN)
  set(troupe_test_code_opt -O0)
elseif(CMAKE_BUILD_TYPE STREQUAL "Release")
  set(troupe_test_code_opt -O1)
endif()
target_compile_options(troupe_build_flags INTERFACE
  "$<$<BOOL:$<TARGET_PROPERTY:TROUPE_TEST_CODE>>:${troupe_test_code_opt}>")
# Every target sees the same third-party usage requirements (e.g. fmt's FMT_SHARED),
# which keeps the shared PCH valid everywhere.
target_link_libraries(troupe_build_flags INTERFACE
  Threads::Threads CAF::io nlohmann_json::nlohmann_json fmt::fmt)

# The precompiled header for CAF. Targets that compile CAF code call
# troupe_use_caf_pch(<target>).
# troupe_add_caf_pch(<name> <flags target>): the CAF PCH built with those flags.
function(troupe_add_caf_pch name flags)
  add_library(${name} OBJECT ${PROJECT_SOURCE_DIR}/cmake/caf_pch.cpp)
  target_link_libraries(${name} PRIVATE ${flags})
  target_precompile_headers(${name} PRIVATE ${PROJECT_SOURCE_DIR}/cmake/caf_pch.hpp)
endfunction()
troupe_add_caf_pch(troupe_caf_pch troupe_build_flags)

function(troupe_use_caf_pch target)
  target_precompile_headers(${target} REUSE_FROM troupe_caf_pch)
endfunction()

# Tests and their helper programs: the same flags, except the optimization (the
# TROUPE_TEST_CODE property, set by troupe_use_test_pch, selects it in
# troupe_build_flags): -O1 in Release, -O0 under the sanitizers; the
# libraries, tools, samples and benchmarks they exercise keep the build's (-O3,
# or -O1 under the sanitizers). Test files are the largest translation units, and
# CI compiles them twice with a cold ccache: in Release the largest took 57 s at
# -O3 and 40 s at -O1; under ASan 134 s at -O1 and 69 s at -O0. Not -O0 in
# Release: inline functions the test files emit at -O0 (std::string's, the
# simulators' value types) can be the copies the linker keeps for the libraries
# too, and the membership simulation took 62 s instead of 24. They get their own
# PCH built with these flags, when the tests are built (not inside another
# project).
add_library(troupe_test_flags INTERFACE)
target_link_libraries(troupe_test_flags INTERFACE troupe_build_flags)
if(TROUPE_BUILD_TESTS)
  troupe_add_caf_pch(troupe_test_pch troupe_test_flags)
  set_target_properties(troupe_test_pch PROPERTIES TROUPE_TEST_CODE ON)
  function(troupe_use_test_pch target)
    set_target_properties(${target} PROPERTIES TROUPE_TEST_CODE ON)
    target_precompile_headers(${target} REUSE_FROM troupe_test_pch)
  endfunction()
else()
  function(troupe_use_test_pch target)
    troupe_use_caf_pch(${target})
  endfunction()
endif()

# troupe_add_layer(<name> [DEPENDS targets...])
# A layer is one static library built from <dir>/src/*.cpp with public headers in
# <dir>/include. New source files are picked up without editing CMake files.
function(troupe_add_layer name)
  cmake_parse_arguments(arg "" "" "DEPENDS" ${ARGN})
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*.cpp)
  add_library(${name} STATIC ${sources})
  target_include_directories(${name}
    PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  troupe_link_library(${name} ${arg_DEPENDS})
  troupe_use_caf_pch(${name})
endfunction()

# troupe_link_library(<target> [dependencies...])
# Links a library troupe installs (cmake/troupe_install.cmake): troupe's compile
# flags (warnings, -Werror, sanitizers) for it and for troupe's targets that link
# it, the dependencies for everyone who links it. `troupe::<name without troupe_>`
# is its name in the installed package and, as an alias, for add_subdirectory(troupe).
# A target of a project that added troupe with add_subdirectory (its binary
# directory is outside troupe's) gets only the link part of troupe's flags (the
# sanitizer runtimes), not -Werror (tests/install/add_subdirectory.cmake checks).
function(troupe_link_library name)
  set(own "$<PATH:IS_PREFIX,${PROJECT_BINARY_DIR},$<TARGET_PROPERTY:BINARY_DIR>>")
  target_link_libraries(${name} PUBLIC
    "$<BUILD_INTERFACE:$<IF:${own},troupe_build_flags,$<LINK_ONLY:troupe_build_flags>>>"
    Threads::Threads CAF::io nlohmann_json::nlohmann_json fmt::fmt ${ARGN})
  target_compile_features(${name} PUBLIC cxx_std_20)
  string(REGEX REPLACE "^troupe_" "" short ${name})
  set_target_properties(${name} PROPERTIES EXPORT_NAME ${short})
  add_library(troupe::${short} ALIAS ${name})
  set_property(GLOBAL APPEND PROPERTY TROUPE_INSTALLED_LIBRARIES ${name})
endfunction()

# troupe_header_check: compiles every public header (the installed ones) on its own (one generated
# translation unit per header, without the PCH), so that each header includes what
# it uses. Not part of `all`: run `./run check-headers`.
function(troupe_add_header_check)
  set(sources)
  foreach(layer actors persistence membership sharding streams tools/cli tools/node)
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
  foreach(layer actors persistence membership sharding streams cli node_main)
    if(TARGET troupe_${layer})
      target_include_directories(troupe_header_check PRIVATE
        $<TARGET_PROPERTY:troupe_${layer},INTERFACE_INCLUDE_DIRECTORIES>)
    endif()
  endforeach()
  target_link_libraries(troupe_header_check PRIVATE SQLite::SQLite3)
endfunction()
