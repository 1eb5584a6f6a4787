#!/usr/bin/env bash
# Services the test suite talks to, on loopback only:
#   - the Docker daemon (dockerd --iptables=false --bridge=none) if its socket does not answer;
#   - an anonymous registry on 127.0.0.1:5100;
#   - a registry with htpasswd (bcrypt) auth on 127.0.0.1:5101, user trimcage / trimcage-test;
#   - a registry with token auth on 127.0.0.1:5102 and its token server on 127.0.0.1:5103
#     (Docker's bearer flow; same user; anonymous users get no access; JWTs signed with openssl).
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

token_ok() { curl -fsS --max-time 3 -o /dev/null "http://127.0.0.1:5103/health" 2>/dev/null; }

write_token_server() {  # a stdlib-only token server; signs RS256 JWTs with the openssl CLI
  cat >"$1" <<'PY'
import base64, http.server, json, os, subprocess, sys, time, uuid
from urllib.parse import parse_qs, urlparse
KEY, CERT_DER, ISSUER, USER, PASSWORD = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
X5C = base64.b64encode(open(CERT_DER, "rb").read()).decode()
def b64u(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def sign(data):
    return subprocess.run(["openssl", "dgst", "-sha256", "-sign", KEY], input=data, capture_output=True,
                          check=True).stdout
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *a): sys.stderr.write("token: " + (fmt % a) + "\n")
    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        u = urlparse(self.path)
        if u.path == "/health": return self.reply(200, {})
        if u.path != "/token": return self.reply(404, {})
        q = parse_qs(u.query)
        user = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try: name, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception: return self.reply(400, {"details": "bad Authorization header"})
            if (name, pw) != (USER, PASSWORD): return self.reply(401, {"details": "bad credentials"})
            user = name
        access = []
        for scope in q.get("scope", []):
            parts = scope.split(":")
            if len(parts) == 3 and parts[0] == "repository" and user:
                access.append({"type": "repository", "name": parts[1], "actions": parts[2].split(",")})
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [X5C]}
        claims = {"iss": ISSUER, "sub": user or "", "aud": q.get("service", [""])[0], "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = (b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode())).encode()
        token = signing_input.decode() + "." + b64u(sign(signing_input))
        self.reply(200, {"token": token, "access_token": token, "expires_in": 300})
http.server.ThreadingHTTPServer(("127.0.0.1", 5103), H).serve_forever()
PY
}

start_token_server() {
  local inst="$DIR/token-5103"
  if token_ok; then echo "token server 5103: already answering"; return 0; fi
  mkdir -p "$inst"
  if [[ ! -f $inst/cert.pem ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$inst/key.pem" -out "$inst/cert.pem" -days 3650 \
      -subj /CN=trimcage-token-issuer >/dev/null 2>&1
    openssl x509 -in "$inst/cert.pem" -outform der -out "$inst/cert.der"
  fi
  write_token_server "$inst/token_server.py"
  echo "token server 5103: starting"
  setsid nohup python3 "$inst/token_server.py" "$inst/key.pem" "$inst/cert.der" trimcage-token-issuer \
    "$AUTH_USER" "$AUTH_PASS" >"$DIR/token-5103.log" 2>&1 </dev/null &
  echo $! >"$inst/pid"
  wait_for 30 "token server on 127.0.0.1:5103" token_ok
  echo "token server 5103: answering"
}

start_registry() {  # start_registry PORT auth|anon|token
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
  elif [[ $mode == token ]]; then
    authblock="auth:
  token:
    realm: http://127.0.0.1:5103/token
    service: trimcage-registry
    issuer: trimcage-token-issuer
    rootcertbundle: $DIR/token-5103/cert.pem"
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
  if token_ok; then echo "token server 5103: up"; else echo "token server 5103: DOWN"; rc=1; fi
  for port in 5100 5101 5102; do
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
    start_token_server
    start_registry 5102 token
    ;;
  stop)
    stop_pidfile "$DIR/token-5103/pid" "token server 5103"
    for port in 5100 5101 5102; do
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
