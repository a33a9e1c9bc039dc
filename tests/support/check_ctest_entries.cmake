# Checks that ctest runs every doctest test case exactly once (a ctest entry, see
# tests/CMakeLists.txt). Usage:
#
#   cmake -DCTEST=<ctest> -DBUILD_DIR=<build dir> -P check_ctest_entries.cmake <suite>...
#
# where each <suite> is the path of a doctest executable. Fails when
# - a ctest entry that runs a suite selects no test case or more than one (its
#   filter is run with --list-test-cases, i.e. through doctest's own matching);
# - a test case of a suite (--list-test-cases) has no entry, or several;
# - hence when the number of entries differs from the number of test cases plus the
#   entries that run no suite (listed by name, e.g. the libFuzzer run).
#
# Lines are kept apart with a placeholder for ';' '[' ']' so that a name with them
# (refused by tests/support/test_main.cpp anyway) cannot merge or split lines here.

cmake_minimum_required(VERSION 3.19)  # string(JSON)

set(suites)
set(after_script FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE ${last})
  if(after_script)
    list(APPEND suites "${CMAKE_ARGV${i}}")
  elseif("${CMAKE_ARGV${i}}" STREQUAL "-P")
    math(EXPR script_index "${i} + 1")
  elseif(DEFINED script_index AND i EQUAL script_index)
    set(after_script TRUE)
  endif()
endforeach()
if(NOT suites)
  message(FATAL_ERROR "check_ctest_entries: no suites given")
endif()

# Names on the output lines of `<command> --list-test-cases`, escaped.
function(list_test_cases out)
  execute_process(COMMAND ${ARGN} --list-test-cases
                  OUTPUT_VARIABLE text ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "'${ARGN} --list-test-cases' failed (${rc}):\n${text}${err}")
  endif()
  string(REPLACE ";" "<semicolon>" text "${text}")
  string(REPLACE "[" "<open>" text "${text}")
  string(REPLACE "]" "<close>" text "${text}")
  string(REPLACE "\n" ";" lines "${text}")
  set(names)
  foreach(line IN LISTS lines)
    if(line STREQUAL "" OR line MATCHES "^<open>doctest<close> " OR line MATCHES "^=+$")
      continue()
    endif()
    list(APPEND names "${line}")
  endforeach()
  set(${out} "${names}" PARENT_SCOPE)
endfunction()

set(problems)
set(case_count 0)
foreach(suite IN LISTS suites)
  list_test_cases(cases "${suite}")
  list(LENGTH cases n)
  math(EXPR case_count "${case_count} + ${n}")
  foreach(c IN LISTS cases)
    string(MD5 key "${suite}\n${c}")
    set(covered_${key} 0)
  endforeach()
  string(MD5 key "${suite}")
  set(cases_${key} "${cases}")
endforeach()

execute_process(COMMAND ${CTEST} --show-only=json-v1 WORKING_DIRECTORY ${BUILD_DIR}
                OUTPUT_VARIABLE json RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ctest --show-only=json-v1 failed (${rc})")
endif()
string(JSON entry_count LENGTH "${json}" tests)
set(doctest_entries 0)
set(other_entries)
math(EXPR last_entry "${entry_count} - 1")
foreach(i RANGE ${last_entry})
  string(JSON name GET "${json}" tests ${i} name)
  string(JSON argc LENGTH "${json}" tests ${i} command)
  string(JSON program GET "${json}" tests ${i} command 0)
  if(NOT program IN_LIST suites)
    list(APPEND other_entries "${name}")
    continue()
  endif()
  math(EXPR doctest_entries "${doctest_entries} + 1")
  set(command "${program}")
  math(EXPR last_arg "${argc} - 1")
  foreach(a RANGE 1 ${last_arg})
    string(JSON arg GET "${json}" tests ${i} command ${a})
    if(NOT arg STREQUAL "")
      list(APPEND command "${arg}")
    endif()
  endforeach()
  list_test_cases(selected ${command})
  list(LENGTH selected n)
  if(NOT n EQUAL 1)
    list(APPEND problems "ctest entry '${name}' runs ${n} test cases (${selected})")
    continue()
  endif()
  string(MD5 key "${program}\n${selected}")
  if(NOT DEFINED covered_${key})
    list(APPEND problems "ctest entry '${name}' runs '${selected}', not a test case of ${program}")
    continue()
  endif()
  math(EXPR times "${covered_${key}} + 1")
  set(covered_${key} ${times})
endforeach()

foreach(suite IN LISTS suites)
  string(MD5 key "${suite}")
  foreach(c IN LISTS cases_${key})
    string(MD5 key "${suite}\n${c}")
    set(times "${covered_${key}}")
    if(NOT times EQUAL 1)
      list(APPEND problems "test case '${c}' of ${suite} is run by ${times} ctest entries")
    endif()
  endforeach()
endforeach()

list(LENGTH other_entries other_count)
math(EXPR expected "${case_count} + ${other_count}")
string(REPLACE ";" "', '" other_names "${other_entries}")
message("ctest entries: ${entry_count}; doctest test cases: ${case_count}; "
        "entries that run no doctest suite: ${other_count} ('${other_names}')")
if(NOT entry_count EQUAL expected)
  list(APPEND problems
       "${entry_count} ctest entries, expected ${case_count} test cases + ${other_count} others")
endif()
if(problems)
  string(REPLACE ";" "\n  " text "${problems}")
  message(FATAL_ERROR "not every test case runs exactly once under ctest:\n  ${text}")
endif()
