#!/usr/bin/env bash
# Services the test suite talks to, on loopback only:
#   - the Docker daemon (dockerd --iptables=false --bridge=none) if its socket does not answer;
#   - an anonymous registry on 127.0.0.1:5100;
#   - a registry with htpasswd (bcrypt) auth on 127.0.0.1:5101, user trimcage / trimcage-test.
# Usage: bash .ci/services.sh start|stop|status   (idempotent; exports nothing)
# Logs, configs and pid files live in /tmp/trimcage-services/; registry storage in a
# temp dir named in each instance's config.yml (tests read it from there).
set -euo pipefail

DIR=/tmp/trimcage-services
SOCK=/var/run/docker.sock
if [[ "${DOCKER_HOST:-}" == unix://* ]]; then SOCK="${DOCKER_HOST#unix://}"; fi
AUTH_USER=trimcage
AUTH_PASS=trimcage-test

docker_ok() { curl -fsS --max-time 3 --unix-socket "$SOCK" http://localhost/_ping >/dev/null 2>&1; }
# A registry answers /v2/ with 200 (anonymous) or 401 (auth required).
registry_ok() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$1/v2/" 2>/dev/null || true)
  [[ "$code" == 200 || "$code" == 401 ]]
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  local i
  for ((i = 0; i < secs * 5; i++)); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  echo "services: $what did not answer within ${secs}s (see $DIR/*.log)" >&2
  return 1
}

start_docker() {
  if docker_ok; then echo "dockerd: already answering on $SOCK"; return 0; fi
  command -v dockerd >/dev/null || { echo "services: dockerd not installed (apt-get install docker.io)" >&2; return 1; }
  echo "dockerd: starting"
  setsid nohup dockerd --iptables=false --bridge=none --ip-masq=false -H "unix://$SOCK" \
    >"$DIR/dockerd.log" 2>&1 </dev/null &
  echo $! >"$DIR/dockerd.pid"
  wait_for 60 "dockerd on $SOCK" docker_ok
  echo "dockerd: answering on $SOCK"
}

start_registry() {  # start_registry PORT auth|anon
  local port=$1 mode=$2 inst="$DIR/registry-$1"
  if registry_ok "$port"; then echo "registry $port: already answering"; return 0; fi
  command -v docker-registry >/dev/null || { echo "services: docker-registry not installed" >&2; return 1; }
  mkdir -p "$inst"
  local storage
  storage=$(mktemp -d /tmp/trimcage-registry-"$port".XXXXXX)
  local authblock=""
  if [[ $mode == auth ]]; then
    htpasswd -Bbn "$AUTH_USER" "$AUTH_PASS" >"$inst/htpasswd"
    authblock="auth:
  htpasswd:
    realm: trimcage-test
    path: $inst/htpasswd"
  fi
  cat >"$inst/config.yml" <<YML
version: 0.1
log:
  level: info
  fields:
    service: registry-$port
storage:
  filesystem:
    rootdirectory: $storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: trimcage-test-secret-$port
$authblock
YML
  echo "registry $port: starting ($mode, storage $storage)"
  setsid nohup docker-registry serve "$inst/config.yml" >"$DIR/registry-$port.log" 2>&1 </dev/null &
  echo $! >"$inst/pid"
  wait_for 30 "registry on 127.0.0.1:$port" registry_ok "$port"
  echo "registry $port: answering"
}

stop_pidfile() {  # stop_pidfile FILE NAME
  local f=$1 name=$2 pid
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name: stopping pid $pid"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

status() {
  local rc=0
  if docker_ok; then echo "dockerd: up ($SOCK)"; else echo "dockerd: DOWN ($SOCK)"; rc=1; fi
  for port in 5100 5101; do
    if registry_ok "$port"; then echo "registry $port: up"; else echo "registry $port: DOWN"; rc=1; fi
  done
  return $rc
}

mkdir -p "$DIR"
case "${1:-}" in
  start)
    start_docker
    start_registry 5100 anon
    start_registry 5101 auth
    ;;
  stop)
    for port in 5100 5101; do
      inst="$DIR/registry-$port"
      stop_pidfile "$inst/pid" "registry $port"
      if [[ -f $inst/config.yml ]]; then
        storage=$(awk '/rootdirectory:/ {print $2}' "$inst/config.yml")
        [[ $storage == /tmp/trimcage-registry-* ]] && rm -rf "$storage"
      fi
    done
    # Only a dockerd this script started is stopped; a system one is left alone.
    stop_pidfile "$DIR/dockerd.pid" dockerd
    ;;
  status)
    status
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
