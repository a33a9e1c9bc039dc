# The add_subdirectory test (ctest label "install"): tests/install/subdirectory, a
# project of its own that builds troupe inside it with add_subdirectory (the
# CMakeLists.txt docs/getting-started.md shows, checked here to be the same), is
# configured, built and run twice (the second run recovers from the journal the
# first wrote). Also: inside another project troupe builds neither its tests nor its
# benchmarks nor its samples, nothing my_app does not link, and troupe's own
# warning flags (-Werror) stay on troupe's targets.
#   cmake -DSOURCE_DIR=... -DWORK_DIR=... -P add_subdirectory.cmake
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/common.cmake)  # run(), launcher (ccache)

set(project_dir ${SOURCE_DIR}/tests/install/subdirectory)
file(READ ${project_dir}/CMakeLists.txt lists)
file(READ ${SOURCE_DIR}/docs/getting-started.md doc)
string(FIND "${doc}" "```cmake\n${lists}```\n" shown)
if(shown EQUAL -1)
  message(FATAL_ERROR "docs/getting-started.md does not show ${project_dir}/CMakeLists.txt "
                      "as it is (in a ```cmake block)")
endif()

set(app ${WORK_DIR}/subdirectory)
file(REMOVE_RECURSE ${app})
# No build type (no -O, no -g): this test is about what gets built and that it
# runs, not how fast, and compiling two layers with a cold compiler cache is most
# of its time (129 s at -O3 on 2 cores).
run("configuring tests/install/subdirectory" ${CMAKE_COMMAND} -S ${project_dir} -B ${app}
    -DCMAKE_BUILD_TYPE= -DTROUPE_SOURCE_DIR=${SOURCE_DIR}
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON ${launcher})
load_cache(${app} READ_WITH_PREFIX cache_ TROUPE_BUILD_TESTS TROUPE_BUILD_BENCH
           TROUPE_BUILD_SAMPLES)
foreach(part TESTS BENCH SAMPLES)
  if(cache_TROUPE_BUILD_${part})
    message(FATAL_ERROR "inside another project TROUPE_BUILD_${part} defaults to "
                        "'${cache_TROUPE_BUILD_${part}}', not OFF")
  endif()
endforeach()
foreach(dir tests bench samples)
  if(EXISTS ${app}/troupe/${dir})
    message(FATAL_ERROR "inside another project troupe configured its ${dir}/")
  endif()
endforeach()

run("building tests/install/subdirectory" ${CMAKE_COMMAND} --build ${app} -j 2)
foreach(unneeded tools/troupe tools/node/troupe-node membership/libtroupe_membership.a)
  if(EXISTS ${app}/troupe/${unneeded})
    message(FATAL_ERROR "building my_app built ${unneeded}, which it does not link")
  endif()
endforeach()

file(READ ${app}/compile_commands.json commands)
string(REGEX MATCH "\"command\": \"[^\"]*\",[ \n]*\"file\": \"[^\"]*/subdirectory/main.cpp\""
       main_command "${commands}")
if(NOT main_command)
  message(FATAL_ERROR "no compile command for main.cpp in ${app}/compile_commands.json")
elseif(main_command MATCHES "-Werror")
  message(FATAL_ERROR "troupe's warning flags reached my_app's main.cpp: ${main_command}")
endif()

set(db --persistence.journal.path=${app}/visits.db --persistence.journal.create-if-missing=true
    --log.level=warn)
run("my_app (first run)" ${app}/my_app ${db})
if(NOT output STREQUAL "visits: 1\n")
  message(FATAL_ERROR "my_app printed '${output}', not 'visits: 1'")
endif()
run("my_app (second run)" ${app}/my_app ${db})
if(NOT output STREQUAL "visits: 2\n")
  message(FATAL_ERROR "my_app printed '${output}' on its second run, not 'visits: 2'")
endif()
message(STATUS "tests/install/subdirectory built troupe with add_subdirectory and ran")
