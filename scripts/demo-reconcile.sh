#!/usr/bin/env bash
# The reconciliation demo, on one machine with nothing but `reconbanker serve`: it starts its own
# server (release build, a temporary data directory, free ports) with the embedded sandbox bank and
# its sandbox shop, and a local webhook receiver; then a user in reconcile mode, an account on
# the sandbox bank, three shop orders and four transfers:
#
#   ORDER-1  1500.00  Juan Perez        one transfer from JUAN PEREZ          -> matched
#   ORDER-2  2300.00  Maria Gomez       two identical transfers               -> ambiguous, resolved by hand -> matched
#   ORDER-3   990.00  Ana Lopez         a transfer from MARIANA LOPEZ (loose)  -> not matched (weak_name_only)
#
# and prints the signed result webhooks the receiver got. The server and receiver are local
# (127.0.0.1), so this one server opts in with RECONBANKER_ALLOW_PRIVATE_TARGETS=true: the
# outbound guard is never relaxed implicitly.
#
#   scripts/demo-reconcile.sh
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }
pretty() { python3 -m json.tool; }

cargo build --release --quiet --bin reconbanker

WORK="$(mktemp -d)"
PORT="$(free_port)"; SPORT="$(free_port)"; HPORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
SANDBOX="http://127.0.0.1:$SPORT"
HOOKS="$WORK/hooks.jsonl"
: >"$HOOKS"

# The local webhook receiver: answers 204 and appends each delivery (headers we show + body) to a file.
python3 - "$HPORT" "$HOOKS" >"$WORK/receiver.log" 2>&1 <<'PY' &
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, out = int(sys.argv[1]), sys.argv[2]
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
        rec = {k: self.headers.get(k) for k in ("webhook-id", "webhook-timestamp", "webhook-signature", "authorization")}
        rec["body"] = body  # as sent: amounts are JSON numbers like 1500.00
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
RPID=$!

RECONBANKER_PORT="$PORT" RECONBANKER_SANDBOX_PORT="$SPORT" RECONBANKER_DATA_DIR="$WORK/data" \
  RECONBANKER_ALLOW_PRIVATE_TARGETS=true RUST_LOG=warn \
  "${CARGO_TARGET_DIR:-target}"/release/reconbanker serve >"$WORK/server.log" 2>&1 &
SPID=$!
trap 'kill $SPID $RPID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 300); do curl -fs "$BASE/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$BASE/health" >/dev/null || { echo "the server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1; }

call() { # METHOD PATH [BODY]
  local args=(-sS -X "$1" "$BASE$2" -H 'content-type: application/json' -H "authorization: Bearer ${TOKEN:-}")
  [ -n "${3:-}" ] && args+=(-d "$3")
  curl "${args[@]}"
}
# Waits (up to 10 s) until `GET PATH` answers something the Python expression EXPR (on d) accepts.
wait_for() { # PATH EXPR
  for _ in $(seq 100); do
    call GET "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if eval(sys.argv[1]) else 1)' "$2" && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1 to satisfy: $2" >&2; exit 1
}

EMAIL="demo-$(date +%s)@example.com"
say "a user in reconcile mode"
call POST /auth/register "{\"email\":\"$EMAIL\",\"password\":\"demo password 1234\"}" >/dev/null
TOKEN=$(call POST /auth/login "{\"email\":\"$EMAIL\",\"password\":\"demo password 1234\"}" | json '["token"]')
call PUT /me/operation-mode '{"mode":"reconcile"}'; echo

SHOP="demo$RANDOM"
say "an account on the sandbox bank (user_good+$SHOP), polling the sandbox shop, results to $HPORT"
BANK=$(call GET /banks | python3 -c 'import json,sys; print([b["id"] for b in json.load(sys.stdin) if b["code"]=="sandbox"][0])')
ACCOUNT=$(call POST /accounts "{\"bankId\":\"$BANK\",\"name\":\"Demo shop\"}" | json '["id"]')
call PUT "/accounts/$ACCOUNT/config" "{\"bank_username\":\"user_good+$SHOP\",\"bank_password\":\"pass_good\",
  \"pending_orders_endpoint\":\"$SANDBOX/_sandbox/shop/orders?shop=$SHOP\",\"auth_token\":\"sandbox\",
  \"webhook_url\":\"http://127.0.0.1:$HPORT/results\",\"webhook_extra_fields\":{\"shop\":\"$SHOP\"}}" \
  | python3 -c 'import json,sys; c=json.load(sys.stdin); print({k: c[k] for k in ("pending_orders_endpoint","webhook_url","webhook_extra_fields")})'

say "the shop's pending orders, and a poll now"
curl -sS -X PUT "$SANDBOX/_sandbox/shop/orders?shop=$SHOP" -H 'authorization: Bearer sandbox' -H 'content-type: application/json' -d '[
  {"external_id":"ORDER-1","amount":"1500.00","currency":"UYU","name":"Juan Perez"},
  {"external_id":"ORDER-2","amount":2300,"currency":"UYU","name":"Maria Gomez"},
  {"external_id":"ORDER-3","amount":"990","currency":"UYU","name":"Ana Lopez"}]' >/dev/null
call POST "/conciliation/poll/$ACCOUNT"; echo
wait_for "/accounts/$ACCOUNT/polls" 'len(d) > 0'
call GET "/accounts/$ACCOUNT/polls" | python3 -c 'import json,sys; p=json.load(sys.stdin)[0]; print({k: p[k] for k in ("outcome","counts")})'

say "four transfers arrive at the bank"
add() { curl -sS -X POST "$SANDBOX/_sandbox/movements" -H 'content-type: application/json' \
  -d "{\"username\":\"user_good+$SHOP\",\"amount\":\"$1\",\"currency\":\"UYU\",\"name\":\"$2\",\"description\":\"$3\"}" >/dev/null; echo "  $1 UYU from $2"; }
add 1500.00 "JUAN PEREZ" "Transfer"
add 2300.00 "MARIA GOMEZ" "Transfer 1 of 2"
add 2300.00 "MARIA GOMEZ" "Transfer 2 of 2"
add 990.00 "MARIANA LOPEZ" "Transfer"

say "Reconbanker reads the bank (POST /accounts/:id/scrape) and matches"
call POST "/accounts/$ACCOUNT/scrape"; echo
wait_for "/conciliation?account_id=$ACCOUNT" 'sorted(r["status"] for r in d if r["external_id"] != "ORDER-3") == ["ambiguous", "matched"]'
call GET "/conciliation?account_id=$ACCOUNT" | python3 -c '
import json,sys
for r in sorted(json.load(sys.stdin), key=lambda r: r["external_id"]):
    print("  %-8s %8s %-12s %-10s %s" % (r["external_id"], r["amount"], r["sender_name"], r["status"], r["reason"]))'

say "ORDER-2 is ambiguous: the review view shows its candidates"
REQ2=$(call GET "/conciliation?account_id=$ACCOUNT&external_id=ORDER-2" | json '[0]["id"]')
call GET "/conciliation/$REQ2" | python3 -c '
import json,sys
d=json.load(sys.stdin)
for c in d["candidates"]:
    m=c["movement"]; print("  %s %s %s %-16s %s" % (m["id"], m["amount"], m["currency"], m["name"], c["verdict"]))'
MOV=$(call GET "/conciliation/$REQ2" | json '["candidates"][0]["movement"]["id"]')

say "a person resolves it with the first transfer: POST /conciliation/$REQ2/resolve"
call POST "/conciliation/$REQ2/resolve" "{\"movement_id\":\"$MOV\"}" | python3 -c '
import json,sys; d=json.load(sys.stdin); print({"status": d["status"], "reason": d["reason"], "matched_by": d["match"]["matched_by"]})'

say "the signed result webhooks the receiver got (ambiguous before its matched)"
for _ in $(seq 100); do [ "$(wc -l <"$HOOKS")" -ge 3 ] && break; sleep 0.1; done
python3 - "$HOOKS" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    print("webhook-id:", d["webhook-id"], " signature:", d["webhook-signature"][:20] + "…")
    print("  " + d["body"])
PY
echo
echo "ORDER-3 stays not_found (MARIANA LOPEZ is too loose a match for Ana Lopez): review it with"
echo "  GET /conciliation/<id> and resolve it by hand, or let it expire after 5 days."
