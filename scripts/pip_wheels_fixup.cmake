# Injected with -DCMAKE_PROJECT_INCLUDE (arguments printed by scripts/pip_wheels_cmake_args.py, used
# by scripts/setup_env.sh and the colcon build test) when the ROS 2 build tools come from PyPI
# wheels; never needed on a ROS machine.
#
# Why: the wheels' exported CMake targets (<pkg>::<pkg>__rosidl_generator_py) carry the include
# directories of the machine that built the wheels (/opt/python/cpXY-cpXY/...: Python and
# numpy headers). CMake rejects imported targets with missing include paths at generate time.
# Rewriting the target properties here, once every find_package() has run, leaves the
# installed wheel files untouched.
#
# Inputs: DECAF_PYTHON_INCLUDE and DECAF_NUMPY_INCLUDE (this interpreter's header folders).

foreach(_var DECAF_PYTHON_INCLUDE DECAF_NUMPY_INCLUDE)
  if(NOT IS_DIRECTORY "${${_var}}")
    message(FATAL_ERROR "pip_wheels_fixup: ${_var}='${${_var}}' is not a directory")
  endif()
endforeach()

# Map one include path: missing paths from a foreign Python install are replaced.
function(_decaf_map_include in_path out_var)
  set(_mapped "${in_path}")
  if(NOT EXISTS "${in_path}")
    if(in_path MATCHES "/numpy/")
      set(_mapped "${DECAF_NUMPY_INCLUDE}")
    elseif(in_path MATCHES "/include/python[0-9]")
      set(_mapped "${DECAF_PYTHON_INCLUDE}")
    endif()
  endif()
  set(${out_var} "${_mapped}" PARENT_SCOPE)
endfunction()

function(_decaf_repoint_imported_includes)
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  set(_count 0)
  foreach(_target IN LISTS _targets)
    foreach(_prop INTERFACE_INCLUDE_DIRECTORIES INTERFACE_SYSTEM_INCLUDE_DIRECTORIES)
      get_target_property(_dirs ${_target} ${_prop})
      if(NOT _dirs)
        continue()
      endif()
      set(_new_dirs "")
      foreach(_dir IN LISTS _dirs)
        _decaf_map_include("${_dir}" _mapped)
        list(APPEND _new_dirs "${_mapped}")
      endforeach()
      list(REMOVE_DUPLICATES _new_dirs)
      if(NOT _new_dirs STREQUAL _dirs)
        set_target_properties(${_target} PROPERTIES ${_prop} "${_new_dirs}")
        math(EXPR _count "${_count} + 1")
      endif()
    endforeach()
  endforeach()
  message(STATUS "pip_wheels_fixup: repointed include paths of ${_count} imported target properties")
endfunction()

# Runs after the whole top-level CMakeLists.txt, i.e. after every find_package().
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _decaf_repoint_imported_includes)
