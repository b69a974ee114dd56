#!/usr/bin/env bash
# The assisted-login demo, against a running `reconbanker serve` (which starts the sandbox bank):
# registers a user, creates an API key and an assisted account on the sandbox bank as user_otp,
# starts a session, shows pending_assistance on /v1 status, submits the code with /v1, and shows
# the movements read.
#
#   cargo run --release -- serve          # in one terminal
#   scripts/demo.sh                       # in another (BASE=http://127.0.0.1:3000 by default)
set -euo pipefail
BASE="${BASE:-http://127.0.0.1:3000}"
EMAIL="demo-$(date +%s)-$RANDOM@example.com"
PASSWORD="demo password 1234"

json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
call() { # METHOD PATH [BODY] [AUTH-HEADER]
  local args=(-sS -X "$1" "$BASE$2" -H 'content-type: application/json')
  [ -n "${3:-}" ] && args+=(-d "$3")
  [ -n "${4:-}" ] && args+=(-H "$4")
  curl "${args[@]}"
}

curl -fsS "$BASE/health" >/dev/null || { echo "no server at $BASE — start it with: cargo run --release -- serve" >&2; exit 1; }

say "register $EMAIL and log in"
call POST /auth/register "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}"; echo
TOKEN=$(call POST /auth/login "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | json '["token"]')
AUTH="authorization: Bearer $TOKEN"

say "an assisted account on the sandbox bank (user_otp)"
BANK=$(call GET /banks "" "$AUTH" | python3 -c 'import json,sys; print([b["id"] for b in json.load(sys.stdin) if b["code"]=="sandbox"][0])')
ACCOUNT=$(call POST /accounts "{\"bankId\":\"$BANK\",\"name\":\"Demo\"}" "$AUTH" | json '["id"]')
call PUT "/accounts/$ACCOUNT/config" '{"login_mode":"assisted","bank_username":"user_otp","bank_password":"pass_otp"}' "$AUTH" \
  | python3 -c 'import json,sys; c=json.load(sys.stdin); print({k: c[k] for k in ("login_mode","bank_username","has_bank_password")})'

say "an API key for your SMS relay (shown once)"
KEY=$(call POST /me/api-keys "{\"name\":\"demo relay\",\"scopes\":[\"status:read\",\"otp:write\"],\"account_ids\":[\"$ACCOUNT\"]}" "$AUTH" | json '["key"]')
echo "${KEY:0:13}…"

say "start a session: POST /accounts/$ACCOUNT/scrape"
call POST "/accounts/$ACCOUNT/scrape" "" "$AUTH"; echo

say "the bank asks for a code: GET /v1/accounts/$ACCOUNT/status"
for _ in $(seq 100); do
  STATUS=$(call GET "/v1/accounts/$ACCOUNT/status" "" "x-api-key: $KEY")
  [ "$(echo "$STATUS" | json '["pending_assistance"]')" != "None" ] && break
  sleep 0.1
done
echo "$STATUS" | python3 -m json.tool

say "the relay submits the code: POST /v1/accounts/$ACCOUNT/otp"
call POST "/v1/accounts/$ACCOUNT/otp" '{"code":"123456"}' "Authorization: Api-Key $KEY"; echo

say "the login continues and reads the movements"
for _ in $(seq 100); do
  COUNT=$(call GET "/accounts/$ACCOUNT/movements" "" "$AUTH" | json '.__len__()')
  [ "$COUNT" != "0" ] && break
  sleep 0.1
done
call GET "/v1/accounts/$ACCOUNT/status" "" "x-api-key: $KEY"; echo
call GET "/accounts/$ACCOUNT/movements?limit=3" "" "$AUTH" | python3 -m json.tool
echo "$COUNT movements stored; runs:"
call GET "/accounts/$ACCOUNT/runs" "" "$AUTH" | python3 -m json.tool
