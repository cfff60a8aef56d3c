# Shared by scripts/demo and scripts/cluster: starting, waiting for and
# stopping the servers they run in the background. Source it after setting
# VAR (pid files under $VAR/run, logs under $VAR/log) and STOP_GRACE_S,
# and declaring the associative array PIDS (name -> pid started here).

pidfile() { echo "$VAR/run/$1.pid"; }

stop_pid() { # stop_pid NAME PID: SIGTERM, then SIGKILL after the grace period
  local name=$1 pid=$2 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_GRACE_S * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { log "stopped $name"; return 0; }
    sleep 0.1
  done
  log "$name did not stop in ${STOP_GRACE_S}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

alive_as() { # alive_as PID WORD: PID runs and its command line mentions WORD
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null && grep -qa -- "$2" "/proc/$1/cmdline" 2>/dev/null
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_until NAME PID SECONDS CMD...: polls CMD until it succeeds, failing if
# the process dies or the time runs out.
wait_until() {
  local name=$1 pid=$2 secs=$3 i; shift 3
  for ((i = 0; i < secs * 20; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { log "$name exited; see $VAR/log/$name.log"; tail -5 "$VAR/log/$name.log" >&2; return 1; }
    sleep 0.05
  done
  log "$name not ready after ${secs}s; see $VAR/log/$name.log"
  return 1
}

start() { # start NAME CMD...: runs CMD in the background, logging to var/log
  local name=$1; shift
  "$@" >>"$VAR/log/$name.log" 2>&1 &
  PIDS[$name]=$!
  echo "${PIDS[$name]}" >"$(pidfile "$name")"
}
