# ctest helper: builds runtime/ as its own project with the system C/C++
# compilers (no MLIR/LLVM on the include path) and runs its tests.
file(REMOVE_RECURSE "${BINARY_DIR}")
execute_process(
  COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${BINARY_DIR}"
          -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=Release
  RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the standalone runtime failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${BINARY_DIR}" RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the standalone runtime failed")
endif()
execute_process(COMMAND ${CMAKE_CTEST_COMMAND} --output-on-failure
                WORKING_DIRECTORY "${BINARY_DIR}" RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "the standalone runtime's tests failed")
endif()
