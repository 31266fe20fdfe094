# Sourced by build.sh and test.sh: compile through ccache (Debian's ccache,
# installed by setup.sh) when it is there. Every CMake build that starts from
# here takes it as its compiler launcher (CMake reads
# CMAKE_<LANG>_COMPILER_LAUNCHER from the environment when it configures a
# new build folder): MoIR, the runtime's sanitizer and AArch64 builds, and
# the tests' standalone runtime build. Paths under the checkout are hashed
# relative to it (CCACHE_BASEDIR), so a fresh clone in another folder (CI's)
# reuses what an earlier build on this machine compiled from the same
# sources and flags; what differs is compiled again. MOIR_NO_CCACHE=1 turns
# it off.
if [ -z "${MOIR_NO_CCACHE:-}" ] && command -v ccache >/dev/null 2>&1; then
  export CMAKE_C_COMPILER_LAUNCHER="${CMAKE_C_COMPILER_LAUNCHER:-ccache}"
  export CMAKE_CXX_COMPILER_LAUNCHER="${CMAKE_CXX_COMPILER_LAUNCHER:-ccache}"
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
  export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
fi
