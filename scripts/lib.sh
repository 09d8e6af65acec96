# Shared by the load scripts (source it; it runs nothing by itself).
#
#   need_wrk         installs wrk from Debian's packages when it is missing
#   target_dir       prints cargo's target directory
#   pin_cpus         sets SERVER_PIN and CLIENT_PIN: with taskset and 2+ cores,
#                    servers on CPU 0 and load generators on CPU 1, so the load
#                    does not steal the server's core; empty otherwise

need_wrk() {
  if ! command -v wrk >/dev/null; then
    echo "installing wrk (Debian package)" >&2
    apt-get install -y wrk >/dev/null
  fi
}

target_dir() {
  cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

pin_cpus() {
  SERVER_PIN=()
  CLIENT_PIN=()
  if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_PIN=(taskset -c 0)
    CLIENT_PIN=(taskset -c 1)
  fi
}
