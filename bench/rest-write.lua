-- wrk: ticket issue for a new user on every request (one ticket per user and session).
local session = os.getenv("EVD_BENCH_SESSION")
local token = os.getenv("EVD_BENCH_TOKEN")
local threads = 0

function setup(thread)
    threads = threads + 1
    thread:set("tid", threads)
end

function init(args)
    n = 0
end

function request()
    n = n + 1
    local body = string.format('{"user_id":"bench-%d-%d"}', tid, n)
    return wrk.format("POST", "/api/v1/sessions/" .. session .. "/tickets", {
        ["Authorization"] = "Bearer " .. token,
        ["Content-Type"] = "application/json",
    }, body)
end
