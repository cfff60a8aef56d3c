# Shared by scripts/demo, scripts/cluster, scripts/test and scripts/bench: the Debian
# packages cardline needs and the build steps. Source it; do not run it.

# Packages to build and run cardline and its test servers. Add a package here
# when the code first uses it.
CARDLINE_PACKAGES=(
  build-essential cmake pkg-config
  libevent-dev libhiredis-dev libjansson-dev libcurl4-openssl-dev
  libinih-dev libsqlite3-dev libcrypt-dev libyaml-dev libpcre2-dev libssl-dev
  libsofia-sip-ua-dev libspandsp-dev libsndfile1-dev libjemalloc-dev libespeak-ng-dev libspeexdsp-dev
  redis-server redis-tools curl kannel kannel-extras espeak-ng sox sip-tester baresip
)
CARDLINE_TEST_PACKAGES=(libcmocka-dev)
# The cluster's parts (scripts/cluster, tests/cluster): the SIP and HTTP
# front doors, Redis Sentinel, and openssl for the front doors' certificate.
CARDLINE_CLUSTER_PACKAGES=(kamailio haproxy redis-sentinel openssl)
CARDLINE_TEST_PACKAGES+=("${CARDLINE_CLUSTER_PACKAGES[@]}")
# The agent console's browser tests (tests/browser): Chromium driven by
# Selenium, and a CJK font so citizens' Chinese shows in the screenshots.
CARDLINE_TEST_PACKAGES+=(chromium chromium-driver python3-selenium fonts-wqy-microhei)
# clang and its runtime libraries (libFuzzer, the sanitizers) for tests/fuzz.
CARDLINE_FUZZ_PACKAGES=(clang libclang-rt-14-dev)

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd; }

log() { printf '%s %s\n' "[$(basename "$0")]" "$*" >&2; }

# ensure_packages PKG...: installs what is missing with apt-get when root;
# otherwise prints the exact command and exits, never prompting.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${missing[*]}"
    log "install them with:  sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# build DIR [CMAKE ARGS...]: configures, then builds incrementally. Every
# option that differs between builds is passed each time, since CMake's
# cache would otherwise keep whatever an earlier run set.
build() {
  local dir=$1; shift
  cmake -S "$(repo_root)" -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
}

# The optimized, unsanitized binaries in build/bin that the demo runs and
# the benchmarks measure.
build_release() {
  build "$(repo_root)/build" -DCARDLINE_SANITIZE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCARDLINE_TESTS=OFF
}

# build_fuzz DIR: the libFuzzer targets of tests/fuzz, built by clang with
# every library instrumented for coverage and the sanitizers (-O1 keeps the
# runs fast and the stacks readable). Only the targets are built: the
# daemon and tools there would cost build time and serve nothing.
build_fuzz() {
  local dir=$1
  cmake -S "$(repo_root)" -B "$dir" -DCMAKE_C_COMPILER=clang -DCARDLINE_FUZZ=ON -DCARDLINE_TESTS=OFF \
        -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS=-O1 >/dev/null
  cmake --build "$dir" --target fuzz -j"$(nproc)"
}
