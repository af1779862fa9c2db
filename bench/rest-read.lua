-- wrk: the event list, one page of 20, as the token's org sees it.
wrk.method = "GET"
wrk.path = "/api/v1/events?limit=20"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("EVD_BENCH_TOKEN")
