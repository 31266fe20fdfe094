# add_moir_dialect(<Name> <namespace> [ENUMS] [INTERFACES] [TYPES] DEPENDS <libs...>)
#
# TableGen for dialects/<Name>/IR/<Name>Ops.td (ops, dialect, attributes, and
# optionally types), <Name>Enums.td or <Name>Interfaces.td when present, the
# generated doc, and the library MoIR<Name>Dialect from <Name>Dialect.cpp and
# <Name>Ops.cpp. Enums and interfaces are generated from their own .td so that
# a dialect including another dialect's .td does not generate its enums twice.
function(add_moir_dialect name namespace)
  cmake_parse_arguments(ARG "TYPES" "" "DEPENDS" ${ARGN})
  set(LLVM_TARGET_DEFINITIONS ${name}Ops.td)
  mlir_tablegen(${name}Ops.h.inc -gen-op-decls)
  mlir_tablegen(${name}Ops.cpp.inc -gen-op-defs)
  mlir_tablegen(${name}Dialect.h.inc -gen-dialect-decls -dialect=${namespace})
  mlir_tablegen(${name}Dialect.cpp.inc -gen-dialect-defs -dialect=${namespace})
  mlir_tablegen(${name}Attrs.h.inc -gen-attrdef-decls -attrdefs-dialect=${namespace})
  mlir_tablegen(${name}Attrs.cpp.inc -gen-attrdef-defs -attrdefs-dialect=${namespace})
  if(ARG_TYPES)
    mlir_tablegen(${name}Types.h.inc -gen-typedef-decls -typedefs-dialect=${namespace})
    mlir_tablegen(${name}Types.cpp.inc -gen-typedef-defs -typedefs-dialect=${namespace})
  endif()
  foreach(part Enums Interfaces)
    if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${name}${part}.td)
      set(LLVM_TARGET_DEFINITIONS ${name}${part}.td)
      if(part STREQUAL "Enums")
        mlir_tablegen(${name}Enums.h.inc -gen-enum-decls)
        mlir_tablegen(${name}Enums.cpp.inc -gen-enum-defs)
      else()
        mlir_tablegen(${name}Interfaces.h.inc -gen-op-interface-decls)
        mlir_tablegen(${name}Interfaces.cpp.inc -gen-op-interface-defs)
      endif()
    endif()
  endforeach()
  add_public_tablegen_target(MoIR${name}IncGen)
  add_mlir_doc(${name}Ops ${name}Dialect moir/ -gen-dialect-doc -dialect=${namespace})

  set(incgen_deps MoIR${name}IncGen)
  foreach(lib ${ARG_DEPENDS})
    if(lib MATCHES "^MoIR(.*)Dialect$")
      list(APPEND incgen_deps MoIR${CMAKE_MATCH_1}IncGen)
    endif()
  endforeach()
  add_mlir_dialect_library(MoIR${name}Dialect
    ${name}Dialect.cpp
    ${name}Ops.cpp

    DEPENDS
    ${incgen_deps}

    LINK_LIBS PUBLIC
    ${ARG_DEPENDS}
    MLIRIR
    MLIRSideEffectInterfaces
    MLIRInferTypeOpInterface
  )
endfunction()
