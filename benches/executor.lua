-- wrk script for benches/executor.sh: the HTTP floor for `run`, replaying the migration's own
-- kind of writes against a sandbox. Every request is a POST with the headers `run` sends
-- (Accept: application/vnd.mambu.v2+json, Content-Type: application/json, Authorization: Basic,
-- a unique Idempotency-Key) and a body of the shape the sample plan renders: one client
-- creation (unique id) every EXEC_CREATE_EVERY requests, the others repayments (unique
-- externalId) on the loans a setup run created (the ids in EXEC_LOANS, one a line). Answers are
-- counted by status; anything but 2xx is reported at the end, with a sample body, because a
-- floor made of refused requests would be worthless.
--
-- Environment: EXEC_LOANS (file of loan ids), EXEC_BRANCH (a branch encodedKey), EXEC_AUTH
-- (base64 of user:password), EXEC_DATE (a value date on or after every disbursement, not in the
-- future, e.g. today), EXEC_NONCE (a number below 2^32 that makes keys and ids unique to this
-- invocation), EXEC_CREATE_EVERY (default 5).

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

local loans, n_loans = {}, 0
local counter = 0
local create_every, nonce, branch, value_date, headers
ok, bad = 0, 0
sample = ""

function init(args)
  for line in io.lines(os.getenv("EXEC_LOANS")) do
    if line ~= "" then
      n_loans = n_loans + 1
      loans[n_loans] = line
    end
  end
  assert(n_loans > 0, "EXEC_LOANS holds no loan ids")
  create_every = tonumber(os.getenv("EXEC_CREATE_EVERY") or "5")
  nonce = tonumber(os.getenv("EXEC_NONCE"))
  branch = os.getenv("EXEC_BRANCH")
  value_date = os.getenv("EXEC_DATE") .. "T00:00:00+00:00"
  headers = {
    ["Accept"] = "application/vnd.mambu.v2+json",
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Basic " .. os.getenv("EXEC_AUTH"),
  }
end

function request()
  counter = counter + 1
  -- A UUID (the sandbox checks the format), unique per invocation, thread and request.
  headers["Idempotency-Key"] = string.format("%08x-%04x-4000-8000-%012x", nonce, tid, counter)
  local unique = string.format("WK-%d-%d-%d", nonce, tid, counter)
  if counter % create_every == 0 then
    local body = string.format(
      '{"assignedBranchKey":"%s","birthDate":"1972-04-14","emailAddress":"ana.araujo%d@mail.example.com",'
        .. '"firstName":"Ana Clara","gender":"FEMALE","id":"%s","lastName":"Araújo","mobilePhone":"+55 11 92713-0421"}',
      branch, counter, unique)
    return wrk.format("POST", "/api/clients", headers, body)
  end
  -- Spread over the loans, each thread on its own stride.
  local loan = loans[((counter * 7919 + tid * 104729) % n_loans) + 1]
  local body = string.format(
    '{"amount":0.01,"externalId":"%s","notes":"standing order","valueDate":"%s"}', unique, value_date)
  return wrk.format("POST", "/api/loans/" .. loan .. "/repayment-transactions", headers, body)
end

function response(status, hdrs, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    bad = bad + 1
    if sample == "" then
      sample = status .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

function done(summary, latency, requests)
  local total_ok, total_bad, samples = 0, 0, {}
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_bad = total_bad + thread:get("bad")
    local s = thread:get("sample")
    if s ~= "" then
      table.insert(samples, s)
    end
  end
  local seconds = summary.duration / 1e6
  io.write(string.format("floor_requests %d\n", summary.requests))
  io.write(string.format("floor_seconds %.3f\n", seconds))
  io.write(string.format("floor_ok %d\n", total_ok))
  io.write(string.format("floor_not_2xx %d\n", total_bad + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
  io.write(string.format("floor_ok_per_second %.1f\n", total_ok / seconds))
  for _, s in ipairs(samples) do
    io.write("floor_refused_sample " .. s .. "\n")
  end
end
